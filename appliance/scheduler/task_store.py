"""Where tasks and their run log live: the ``TaskStore`` protocol and an in-memory implementation.

Rules:
- ``claim`` saves the task with its next run already advanced *and* inserts the run row, in one write,
  before the run starts. A restart during a run therefore never fires the same slot again (NanoClaw's
  double-run after restart, issue #1337, cannot happen).
- ``finish`` closes the run row and updates the task's ``last_*`` fields in one write.
- ``close_interrupted`` (at start) marks runs left ``running`` by a dead process as ``interrupted``.
- Methods are synchronous and short, as for the queue journal.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from appliance.models.tasks import RunStatus, Task, TaskRun

__all__ = ["MemoryTaskStore", "TaskStore"]


class TaskStore(Protocol):
    def load(self) -> list[Task]: ...

    def save(self, task: Task) -> None: ...

    def delete(self, task_id: str) -> None: ...

    def claim(self, task: Task, run: TaskRun) -> None: ...

    def finish(self, task: Task | None, run: TaskRun) -> None: ...

    def runs(self, task_id: str | None = None, limit: int = 50) -> list[TaskRun]: ...

    def get_run(self, run_id: str) -> TaskRun | None: ...

    def close_interrupted(self, now_ms: int) -> list[TaskRun]: ...


class MemoryTaskStore:
    """Tasks and runs in dicts: same rules, no durability."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.run_log: dict[str, TaskRun] = {}

    def load(self) -> list[Task]:
        return sorted(self.tasks.values(), key=lambda t: (t.created_ms, t.id))

    def save(self, task: Task) -> None:
        self.tasks[task.id] = task

    def delete(self, task_id: str) -> None:
        self.tasks.pop(task_id, None)
        for run_id in [r.run_id for r in self.run_log.values() if r.task_id == task_id]:
            del self.run_log[run_id]

    def claim(self, task: Task, run: TaskRun) -> None:
        self.tasks[task.id] = task
        self.run_log[run.run_id] = run

    def finish(self, task: Task | None, run: TaskRun) -> None:
        if task is not None:
            self.tasks[task.id] = task
        if run.task_id in self.tasks:
            self.run_log[run.run_id] = run

    def runs(self, task_id: str | None = None, limit: int = 50) -> list[TaskRun]:
        rows = [r for r in self.run_log.values() if task_id is None or r.task_id == task_id]
        return sorted(rows, key=lambda r: (r.started_ms, r.run_id), reverse=True)[:limit]

    def get_run(self, run_id: str) -> TaskRun | None:
        return self.run_log.get(run_id)

    def close_interrupted(self, now_ms: int) -> list[TaskRun]:
        closed = []
        for run in list(self.run_log.values()):
            if run.status is RunStatus.RUNNING:
                done = attrs.evolve(
                    run, status=RunStatus.INTERRUPTED, ended_ms=now_ms, error="interrupted by restart"
                )
                self.run_log[run.run_id] = done
                closed.append(done)
        return closed
