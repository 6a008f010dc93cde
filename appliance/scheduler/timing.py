"""When does a task run next? Sans-IO: the current time is an argument, the answer an epoch-ms int.

Rules:
- ``next_run(spec, now_ms)`` is strictly greater than ``now_ms``, or ``None`` when nothing is left.
- cron: croniter parses the 5 fields (names, ranges, steps, ``L``); we match wall-clock times in the
  task's IANA zone ourselves, because the DST rules below are ours to choose and to test:
  * a local time that does not exist (spring forward) runs at the first instant after the gap, once,
    even if several slots fell in the gap;
  * a local time that happens twice (fall back) runs once, at its first occurrence;
  * day-of-month and day-of-week both restricted means either matches (classic cron).
- interval: the grid ``anchor + k * every`` (k >= 1); missed slots are skipped, never bunched.
- once: ``at_ms`` while it is in the future, then ``None``.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Sequence

import attrs

from appliance.models.tasks import ScheduleKind, TaskSpec

__all__ = ["CronFields", "InvalidSchedule", "next_run", "parse_cron", "validate_spec"]

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MINUTE_MS = 60_000
#: how far ahead to look before calling an expression impossible (covers Feb 29 on a given weekday)
_SEARCH_DAYS = 366 * 29


class InvalidSchedule(ValueError):
    """The schedule can never fire or cannot be parsed. The gateway maps it to INVALID_REQUEST."""


@attrs.frozen
class CronFields:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: every day of the month
    last_day: bool  # ``L`` in the day-of-month field
    months: frozenset[int]
    weekdays: frozenset[int] | None  # 0 = Sunday; None: every weekday

    def day_matches(self, day: dt.date) -> bool:
        dom_restricted = self.days is not None or self.last_day
        dom = (self.days is not None and day.day in self.days) or (
            self.last_day and (day + dt.timedelta(days=1)).month != day.month
        )
        dow = self.weekdays is not None and (day.isoweekday() % 7) in self.weekdays
        if dom_restricted and self.weekdays is not None:
            return dom or dow
        if dom_restricted:
            return dom
        if self.weekdays is not None:
            return dow
        return True


def _ints(values: Sequence[object], what: str, every: range | None = None) -> frozenset[int]:
    if every is not None and list(values) == ["*"]:
        return frozenset(every)
    out: set[int] = set()
    for value in values:
        if not isinstance(value, int):
            raise InvalidSchedule(f"unsupported {what} value: {value!r}")
        out.add(value)
    return frozenset(out)


@functools.lru_cache(maxsize=512)
def parse_cron(expr: str) -> CronFields:
    """Parse a 5-field expression (or an ``@daily``-style alias) with croniter.

    Raises InvalidSchedule for anything else, including 6-field (seconds) forms and ``#``/``L`` weekday
    forms we do not match.
    """
    from croniter import croniter  # lazily: ~25 ms of imports that serving the first request does not need

    text = " ".join(expr.split())
    if not text.startswith("@") and len(text.split(" ")) != 5:
        raise InvalidSchedule(f"cron expression must have 5 fields: {expr!r}")
    try:
        fields, nth = croniter.expand(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSchedule(f"invalid cron expression: {expr!r}") from exc
    if nth or len(fields) != 5:
        raise InvalidSchedule(f"unsupported cron expression: {expr!r}")
    minute, hour, dom, month, dow = fields
    last_day = "l" in dom
    dom_rest = [d for d in dom if d not in ("l", "*")]
    return CronFields(
        minutes=_ints(minute, "minute", range(60)),
        hours=_ints(hour, "hour", range(24)),
        days=None if dom == ["*"] or (last_day and not dom_rest) else _ints(dom_rest, "day"),
        last_day=last_day,
        months=_ints(month, "month", range(1, 13)),
        weekdays=None if dow == ["*"] else frozenset(d % 7 for d in _ints(dow, "weekday")),
    )


def _to_ms(instant: dt.datetime) -> int:
    return (instant - _EPOCH) // dt.timedelta(milliseconds=1)


def _from_ms(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def _resolve_local(naive: dt.datetime, tz: zoneinfo.ZoneInfo) -> int:
    """The instant a wall-clock time stands for: its first occurrence, or the end of the gap it is in."""
    first = naive.replace(tzinfo=tz, fold=0)
    instant = _to_ms(first.astimezone(_UTC))
    if _from_ms(instant).astimezone(tz).replace(tzinfo=None) == naive:
        return instant
    # In a gap (spring forward): fold=1 reads it with the later offset (an instant before the gap),
    # fold=0 with the earlier offset (one after it). The transition lies between; find its minute.
    lo = _to_ms(naive.replace(tzinfo=tz, fold=1).astimezone(_UTC))
    hi = instant
    lo, hi = min(lo, hi), max(lo, hi)
    before = _from_ms(lo).astimezone(tz).utcoffset()
    while hi - lo > _MINUTE_MS:
        mid = lo + ((hi - lo) // 2 // _MINUTE_MS) * _MINUTE_MS
        if _from_ms(mid).astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def _next_cron(fields: CronFields, tz_name: str, now_ms: int) -> int:
    tz = zoneinfo.ZoneInfo(tz_name)
    local_now = _from_ms(now_ms).astimezone(tz).replace(tzinfo=None)
    # Wall times before local_now map to instants <= now (first occurrence, or a gap end already passed),
    # so the search starts at the current wall-clock minute.
    start = local_now.replace(second=0, microsecond=0)
    hours = sorted(fields.hours)
    minutes = sorted(fields.minutes)
    day = start.date()
    for _ in range(_SEARCH_DAYS):
        if day.month in fields.months and fields.day_matches(day):
            for hour in hours:
                if day == start.date() and hour < start.hour:
                    continue
                for minute in minutes:
                    naive = dt.datetime(day.year, day.month, day.day, hour, minute)
                    if naive < start:
                        continue
                    instant = _resolve_local(naive, tz)
                    if instant > now_ms:
                        return instant
        day += dt.timedelta(days=1)
    raise InvalidSchedule("cron expression never fires")


def next_run(spec: TaskSpec, now_ms: int) -> int | None:
    """The first run strictly after ``now_ms``, or ``None`` if the task has nothing left to run.

    Raises InvalidSchedule for a cron expression that cannot be parsed or never fires.
    """
    if spec.kind is ScheduleKind.ONCE:
        return spec.at_ms if spec.at_ms > now_ms else None
    if spec.kind is ScheduleKind.INTERVAL:
        k = max(1, (now_ms - spec.anchor_ms) // spec.every_ms + 1)
        return spec.anchor_ms + k * spec.every_ms
    return _next_cron(parse_cron(spec.expr), spec.tz, now_ms)


def validate_spec(spec: TaskSpec, now_ms: int) -> int | None:
    """Check a spec as the scheduler will use it and return its first run; raises InvalidSchedule."""
    return next_run(spec, now_ms)
