"""The task store in SQLite (apsw), with the rules of :mod:`appliance.scheduler.task_store`.

The DDL is a module constant for the store's migration ladder to take over; until then
:class:`SqliteTaskStore` applies it with ``CREATE ... IF NOT EXISTS``. Runs are deleted with their task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw
import attrs

from appliance.models.tasks import RunStatus, Task, TaskRun, TaskSpec
from appliance.store.migrations import SCHEDULER_SCHEMA_SQL

__all__ = ["SCHEDULER_SCHEMA_SQL", "SqliteTaskStore"]


_TASK_COLUMNS = (
    "id, name, kind, expr, tz, every_ms, anchor_ms, at_ms, prompt, session_key, status, created_ms, "
    "updated_ms, next_run_ms, last_run_ms, last_status, last_error, extra_json"
)
_RUN_COLUMNS = "run_id, task_id, scheduled_ms, started_ms, ended_ms, status, error, result, manual"


def _task_row(task: Task) -> tuple[Any, ...]:
    s = task.spec
    return (
        task.id,
        task.name,
        str(s.kind),
        s.expr,
        s.tz,
        s.every_ms,
        s.anchor_ms,
        s.at_ms,
        task.prompt,
        task.session_key,
        str(task.status),
        task.created_ms,
        task.updated_ms,
        task.next_run_ms,
        task.last_run_ms,
        None if task.last_status is None else str(task.last_status),
        task.last_error,
        task.extra_json,
    )


def _task(row: Sequence[Any]) -> Task:
    (
        tid,
        name,
        kind,
        expr,
        tz,
        every,
        anchor,
        at,
        prompt,
        key,
        status,
        created,
        updated,
        nxt,
        last,
        lst,
        err,
        extra,
    ) = row
    spec = TaskSpec(kind, expr=expr, tz=tz, every_ms=every, anchor_ms=anchor, at_ms=at)
    return Task(
        id=tid,
        name=name,
        spec=spec,
        prompt=prompt,
        session_key=key,
        created_ms=created,
        updated_ms=updated,
        status=status,
        next_run_ms=nxt,
        last_run_ms=last,
        last_status=None if lst is None else RunStatus(lst),
        last_error=err,
        extra_json=extra,
    )


def _run_row(run: TaskRun) -> tuple[Any, ...]:
    return (
        run.run_id,
        run.task_id,
        run.scheduled_ms,
        run.started_ms,
        run.ended_ms,
        str(run.status),
        run.error,
        run.result,
        int(run.manual),
    )


def _run(row: Sequence[Any]) -> TaskRun:
    run_id, task_id, scheduled, started, ended, status, error, result, manual = row
    return TaskRun(run_id, task_id, scheduled, started, status, ended, error, result, bool(manual))


_INSERT_TASK = f"INSERT INTO sched_tasks ({_TASK_COLUMNS}) VALUES ({', '.join('?' * 18)})"
_UPSERT_RUN = f"INSERT OR REPLACE INTO sched_runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 9)})"


class SqliteTaskStore:
    """A :class:`~appliance.scheduler.task_store.TaskStore` on an apsw connection."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn
        with self._conn:
            self._conn.execute("PRAGMA foreign_keys = ON")
        with self._conn:
            self._conn.execute(SCHEDULER_SCHEMA_SQL)

    def load(self) -> list[Task]:
        rows = self._conn.execute(f"SELECT {_TASK_COLUMNS} FROM sched_tasks ORDER BY created_ms, id")
        return [_task(row) for row in rows]

    def save(self, task: Task) -> None:
        with self._conn:
            self._upsert_task(task)

    def _upsert_task(self, task: Task) -> None:
        # INSERT OR REPLACE would delete the row first and cascade to its runs: update in place instead.
        self._conn.execute(
            "UPDATE sched_tasks SET name=?, kind=?, expr=?, tz=?, every_ms=?, anchor_ms=?, at_ms=?, prompt=?, "
            "session_key=?, status=?, created_ms=?, updated_ms=?, next_run_ms=?, last_run_ms=?, last_status=?, "
            "last_error=?, extra_json=? WHERE id=?",
            (*_task_row(task)[1:], task.id),
        )
        if self._conn.changes() == 0:
            self._conn.execute(_INSERT_TASK, _task_row(task))

    def delete(self, task_id: str) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM sched_runs WHERE task_id = ?", (task_id,))
            self._conn.execute("DELETE FROM sched_tasks WHERE id = ?", (task_id,))

    def claim(self, task: Task, run: TaskRun) -> None:
        with self._conn:
            self._upsert_task(task)
            self._conn.execute(_UPSERT_RUN, _run_row(run))

    def finish(self, task: Task | None, run: TaskRun) -> None:
        with self._conn:
            if task is not None:
                self._upsert_task(task)
            exists = self._conn.execute("SELECT 1 FROM sched_tasks WHERE id = ?", (run.task_id,)).fetchone()
            if exists is not None:
                self._conn.execute(_UPSERT_RUN, _run_row(run))

    def runs(self, task_id: str | None = None, limit: int = 50) -> list[TaskRun]:
        if task_id is None:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM sched_runs ORDER BY started_ms DESC, run_id DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM sched_runs WHERE task_id = ? "
                "ORDER BY started_ms DESC, run_id DESC LIMIT ?",
                (task_id, limit),
            )
        return [_run(row) for row in rows]

    def get_run(self, run_id: str) -> TaskRun | None:
        row = self._conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM sched_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else _run(row)

    def close_interrupted(self, now_ms: int) -> list[TaskRun]:
        with self._conn:
            rows = list(self._conn.execute(f"SELECT {_RUN_COLUMNS} FROM sched_runs WHERE status = 'running'"))
            self._conn.execute(
                "UPDATE sched_runs SET status = 'interrupted', ended_ms = ?, error = 'interrupted by restart' "
                "WHERE status = 'running'",
                (now_ms,),
            )
        return [
            attrs.evolve(
                _run(row), status=RunStatus.INTERRUPTED, ended_ms=now_ms, error="interrupted by restart"
            )
            for row in rows
        ]
