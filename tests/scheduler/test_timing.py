from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.models.tasks import TaskSpec
from appliance.scheduler.timing import InvalidSchedule, next_run, parse_cron

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
#: expressions that fire often enough for a brute-force minute scan to check minimality
FREQUENT = ["*/20 * * * *", "0 * * * *", "30 2 * * *", "15,45 1-3 * * *", "5 */2 * * *", "0 2 * * 0"]
Y2020 = 1_577_836_800_000
Y2040 = 2_208_988_800_000
MIN = 60_000
#: DST transitions of the test zones in 2026 (UTC ms), so hypothesis lands near the edges
EDGES = [
    1_774_746_000_000,  # Europe/Berlin spring forward 2026-03-29 01:00Z
    1_792_890_000_000,  # Europe/Berlin fall back 2026-10-25 01:00Z
    1_772_953_200_000,  # America/New_York spring forward 2026-03-08 07:00Z
    1_793_512_800_000,  # America/New_York fall back 2026-11-01 06:00Z
    1_775_314_800_000,  # Australia/Lord_Howe fall back 2026-04-04 15:00Z
    1_791_041_400_000,  # Australia/Lord_Howe spring forward 2026-10-03 15:30Z
]
NOW = st.one_of(
    st.integers(Y2020, Y2040),
    st.builds(lambda e, d: e + d, st.sampled_from(EDGES), st.integers(-3 * 3_600_000, 3 * 3_600_000)),
)


def at(text: str, tz: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz)).timestamp() * 1000)


def local(ms: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, zoneinfo.ZoneInfo(tz))


def wall_matches(expr: str, when: dt.datetime) -> bool:
    fields = parse_cron(expr)
    return (
        when.minute in fields.minutes
        and when.hour in fields.hours
        and when.month in fields.months
        and fields.day_matches(when.date())
    )


def is_first_occurrence(ms: int, tz: str) -> bool:
    """The wall time at ``ms`` has not been shown before (not the second pass of a fall-back)."""
    wall = local(ms, tz).replace(tzinfo=None)
    return at(wall.isoformat(), tz) == ms


def after_gap(ms: int, tz: str) -> bool:
    """``ms`` is the first instant after a spring-forward gap."""
    zone = zoneinfo.ZoneInfo(tz)
    before = dt.datetime.fromtimestamp((ms - 1) / 1000, zone).utcoffset()
    return before is not None and before < (local(ms, tz).utcoffset() or dt.timedelta(0))


def gap_slot_fired(expr: str, ms: int, tz: str) -> bool:
    """A slot whose wall time fell into the gap ending at ``ms``."""
    zone = zoneinfo.ZoneInfo(tz)
    wall_after = local(ms, tz).replace(tzinfo=None)
    offset_before = dt.datetime.fromtimestamp((ms - 1) / 1000, zone).utcoffset() or dt.timedelta(0)
    offset_after = local(ms, tz).utcoffset() or dt.timedelta(0)
    gap_start = wall_after - (offset_after - offset_before)
    probe = gap_start
    while probe < wall_after:
        if wall_matches(expr, probe):
            return True
        probe += dt.timedelta(minutes=1)
    return False


@settings(max_examples=300, deadline=None)
@given(
    expr=st.sampled_from([*FREQUENT, "0 9 * * 1-5", "0 0 1 * *", "0 0 L * *", "@daily", "0 12 29 2 *"]),
    tz=st.sampled_from(ZONES),
    now=NOW,
)
def test_cron_next_run_is_after_now_and_on_grid(expr: str, tz: str, now: int) -> None:
    nxt = next_run(TaskSpec.cron(expr, tz), now)
    assert nxt is not None
    assert nxt > now
    assert nxt % MIN == 0
    on_grid = wall_matches(expr, local(nxt, tz)) and is_first_occurrence(nxt, tz)
    assert on_grid or (after_gap(nxt, tz) and gap_slot_fired(expr, nxt, tz))


@settings(max_examples=60, deadline=None)
@given(expr=st.sampled_from(FREQUENT), tz=st.sampled_from(ZONES), now=NOW)
def test_cron_next_run_skips_no_slot(expr: str, tz: str, now: int) -> None:
    """Brute force: no instant between now and next_run is a first-occurrence match."""
    nxt = next_run(TaskSpec.cron(expr, tz), now)
    assert nxt is not None
    probe = (now // MIN + 1) * MIN
    while probe < nxt:
        assert not (wall_matches(expr, local(probe, tz)) and is_first_occurrence(probe, tz)), probe
        assert not (after_gap(probe, tz) and gap_slot_fired(expr, probe, tz)), probe
        probe += MIN


def runs_between(spec: TaskSpec, start: int, end: int) -> list[int]:
    out: list[int] = []
    now = start
    while (nxt := next_run(spec, now)) is not None and nxt < end:
        out.append(nxt)
        now = nxt
    return out


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        ("Europe/Berlin", "2026-03-29", "2026-03-29T03:00:00+02:00"),
        ("America/New_York", "2026-03-08", "2026-03-08T03:00:00-04:00"),
        ("Australia/Lord_Howe", "2026-10-04", "2026-10-04T02:30:00+11:00"),
    ],
)
def test_nonexistent_local_time_runs_once_at_gap_end(tz: str, day: str, expected: str) -> None:
    spec = TaskSpec.cron("15 2 * * *", tz)
    runs = runs_between(spec, at(f"{day}T00:00", tz), at(f"{day}T23:59", tz))
    assert [local(r, tz).isoformat() for r in runs] == [expected]


def test_every_slot_in_a_gap_collapses_to_one_run() -> None:
    tz = "Europe/Berlin"
    runs = runs_between(
        TaskSpec.cron("*/15 * * * *", tz), at("2026-03-29T01:40", tz), at("2026-03-29T03:20", tz)
    )
    assert [local(r, tz).strftime("%H:%M%z") for r in runs] == ["01:45+0100", "03:00+0200", "03:15+0200"]


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        ("Europe/Berlin", "2026-10-25"),
        ("America/New_York", "2026-11-01"),
        ("Australia/Lord_Howe", "2026-04-05"),
    ],
)
def test_ambiguous_local_time_runs_once(tz: str, day: str) -> None:
    spec = TaskSpec.cron("*/10 1-2 * * *", tz)
    runs = runs_between(spec, at(f"{day}T00:00", tz), at(f"{day}T23:59", tz))
    walls = [local(r, tz).strftime("%H:%M") for r in runs]
    assert len(walls) == len(set(walls)) == 12
    assert runs == sorted(runs)


@settings(max_examples=200)
@given(
    anchor=st.integers(Y2020, Y2040),
    every=st.integers(1000, 7 * 86_400_000),
    offset=st.integers(-(10**9), 10**11),
)
def test_interval_is_on_the_anchored_grid_and_skips_missed_slots(
    anchor: int, every: int, offset: int
) -> None:
    now = anchor + offset
    nxt = next_run(TaskSpec.interval(every, anchor), now)
    assert nxt is not None
    assert nxt > now
    assert (nxt - anchor) % every == 0
    assert nxt - anchor >= every
    assert nxt - every <= max(now, anchor)  # the previous slot is not in the future: nothing bunched


def test_interval_contract_case_14() -> None:
    now = 10_000_000
    spec = TaskSpec.interval(60_000, now - 2000 - 60_000)
    assert next_run(spec, now) == now - 2000 + 60_000
    spec = TaskSpec.interval(60_000, now - 600_000 - 60_000)
    nxt = next_run(spec, now)
    assert nxt is not None
    assert nxt > now
    assert (nxt - (now - 600_000)) % 60_000 == 0


@given(at_ms=st.integers(1, Y2040), now=st.integers(0, Y2040))
def test_once_runs_only_while_in_the_future(at_ms: int, now: int) -> None:
    nxt = next_run(TaskSpec.once(at_ms), now)
    assert nxt == (at_ms if at_ms > now else None)


@pytest.mark.parametrize(
    "expr", ["not a cron", "* * * *", "0 0 * * * *", "61 * * * *", "0 0 31 2 *", "0 0 * * mon#2"]
)
def test_invalid_cron_is_rejected(expr: str) -> None:
    with pytest.raises(InvalidSchedule):
        next_run(TaskSpec.cron(expr), Y2020)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "cron", "expr": ""},
        {"kind": "interval", "every_ms": 0},
        {"kind": "once"},
        {"kind": "cron", "expr": "* * * * *", "tz": "Mars/Base"},
    ],
)
def test_invalid_specs_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TaskSpec(**kwargs)  # type: ignore[arg-type]
