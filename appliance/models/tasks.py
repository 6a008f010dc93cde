"""Scheduled tasks: what to run (``TaskSpec``), the task row (``Task``) and one execution (``TaskRun``).

Rules:
- All instants are integer epoch milliseconds (UTC), the unit OpenClaw's wire uses (``nextRunAtMs``).
- A ``TaskSpec`` is valid on construction: the kind decides which fields matter and the validators reject
  the rest, so ``next_run`` never sees a half-filled spec. Cron expressions are checked by the scheduler's
  timing core (it owns the parser), not here.
- Models are frozen; changes go through ``attrs.evolve``.
"""

from __future__ import annotations

import enum
import zoneinfo

import attrs

__all__ = ["RunStatus", "ScheduleKind", "Task", "TaskRun", "TaskSpec", "TaskStatus"]


class ScheduleKind(enum.StrEnum):
    CRON = "cron"
    INTERVAL = "interval"
    ONCE = "once"


class TaskStatus(enum.StrEnum):
    """``completed`` is terminal: a ``once`` task that ran, whether the run succeeded or not."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    #: the process died while the run was in flight; found and closed at the next start
    INTERRUPTED = "interrupted"


def _check_tz(_inst: object, _attr: object, value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {value!r}") from exc


@attrs.frozen
class TaskSpec:
    """When a task runs.

    - ``cron``: ``expr`` is a 5-field expression read in the IANA zone ``tz``.
    - ``interval``: every ``every_ms`` on the grid ``anchor_ms + k * every_ms`` (k >= 1); the anchor is the
      creation time, so the grid never drifts.
    - ``once``: at ``at_ms``.
    """

    kind: ScheduleKind = attrs.field(converter=ScheduleKind)
    expr: str = ""
    tz: str = attrs.field(default="UTC", validator=_check_tz)
    every_ms: int = 0
    anchor_ms: int = 0
    at_ms: int = 0

    def __attrs_post_init__(self) -> None:
        if self.kind is ScheduleKind.CRON and not self.expr.strip():
            raise ValueError("cron task needs an expression")
        if self.kind is ScheduleKind.INTERVAL and self.every_ms < 1000:
            raise ValueError("interval must be at least 1000 ms")
        if self.kind is ScheduleKind.ONCE and self.at_ms <= 0:
            raise ValueError("once task needs an absolute time")

    @classmethod
    def cron(cls, expr: str, tz: str = "UTC") -> TaskSpec:
        return cls(ScheduleKind.CRON, expr=expr, tz=tz)

    @classmethod
    def interval(cls, every_ms: int, anchor_ms: int) -> TaskSpec:
        return cls(ScheduleKind.INTERVAL, every_ms=every_ms, anchor_ms=anchor_ms)

    @classmethod
    def once(cls, at_ms: int) -> TaskSpec:
        return cls(ScheduleKind.ONCE, at_ms=at_ms)


@attrs.frozen
class Task:
    """A scheduled task. ``next_run_ms`` is ``None`` once nothing is left to run."""

    id: str
    name: str
    spec: TaskSpec
    prompt: str
    session_key: str
    created_ms: int
    updated_ms: int
    status: TaskStatus = attrs.field(default=TaskStatus.ACTIVE, converter=TaskStatus)
    next_run_ms: int | None = None
    last_run_ms: int | None = None
    last_status: RunStatus | None = None
    last_error: str | None = None
    #: wire-only fields the scheduler keeps but does not interpret (OpenClaw's ``sessionTarget``,
    #: ``wakeMode``, payload kind, ``description``...), as a JSON object text
    extra_json: str = "{}"


@attrs.frozen
class TaskRun:
    """One execution of a task: logged when it starts and closed when it ends."""

    run_id: str
    task_id: str
    scheduled_ms: int
    started_ms: int
    status: RunStatus = attrs.field(default=RunStatus.RUNNING, converter=RunStatus)
    ended_ms: int | None = None
    error: str | None = None
    result: str | None = None
    #: ``True`` when started by ``run now`` rather than by the schedule
    manual: bool = False

    @property
    def duration_ms(self) -> int | None:
        return None if self.ended_ms is None else self.ended_ms - self.started_ms
