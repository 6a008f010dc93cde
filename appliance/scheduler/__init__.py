"""The scheduler: cron / interval / once tasks, next-run timing (sans-IO), the trio runner, the run log.

Import from here; the modules behind are private to the component.
"""

from __future__ import annotations

from appliance.scheduler.runner import (
    CatchUp,
    Dispatch,
    Scheduler,
    TaskBusy,
    TaskLimitReached,
    open_scheduler,
    queue_dispatch,
)
from appliance.scheduler.task_store import MemoryTaskStore, TaskStore
from appliance.scheduler.task_store_sqlite import SCHEDULER_SCHEMA_SQL, SqliteTaskStore
from appliance.scheduler.timing import InvalidSchedule, next_run, parse_cron, validate_spec

__all__ = [
    "SCHEDULER_SCHEMA_SQL",
    "CatchUp",
    "Dispatch",
    "InvalidSchedule",
    "MemoryTaskStore",
    "Scheduler",
    "SqliteTaskStore",
    "TaskBusy",
    "TaskLimitReached",
    "TaskStore",
    "next_run",
    "open_scheduler",
    "parse_cron",
    "queue_dispatch",
    "validate_spec",
]
