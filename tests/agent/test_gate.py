"""Turn gates: one turn at a time per session in arrival order, a global cap; the run-queue adapter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from appliance.agent import AgentRuntime, LocalTurnGate, QueueTurnGate, TurnGate, TurnRequest, TurnStatus
from appliance.config.settings import Settings
from appliance.queue import MemoryJournal, make_item, open_run_queue
from appliance.store import Database, open_database


async def _exercise(gate: TurnGate) -> tuple[list[str], int]:
    order: list[str] = []
    running = 0
    peak = 0

    async def turn(session: str, name: str) -> None:
        nonlocal running, peak
        async with gate.hold(session):
            running += 1
            peak = max(peak, running)
            order.append(name)
            await trio.sleep(0.01)
            running -= 1

    async with trio.open_nursery() as nursery:
        for i in range(3):
            for session in ("a", "b", "c"):
                nursery.start_soon(turn, session, f"{session}{i}")
                await trio.testing.wait_all_tasks_blocked()
    return order, peak


async def test_local_gate_is_fifo_per_session_and_capped(autojump_clock: trio.abc.Clock) -> None:
    order, peak = await _exercise(LocalTurnGate(2))
    assert peak == 2
    for session in "abc":
        assert [n for n in order if n[0] == session] == [f"{session}0", f"{session}1", f"{session}2"]


async def test_queue_gate_is_fifo_per_session_and_capped(autojump_clock: trio.abc.Clock) -> None:
    gate = QueueTurnGate()
    async with open_run_queue(gate.runner, MemoryJournal(), max_concurrent=2, capacity=8) as queue:
        gate.queue = queue
        order, peak = await _exercise(gate)
    assert peak == 2
    for session in "abc":
        assert [n for n in order if n[0] == session] == [f"{session}0", f"{session}1", f"{session}2"]


async def test_queue_gate_finishes_orphans_recovered_from_the_journal() -> None:
    gate = QueueTurnGate()
    assert await gate.runner(make_item("agent:main:main", item_id="lost")) == "orphaned"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "g.db")
    yield database
    database.close()


@pytest.mark.parametrize("capacity", [1, 8])
async def test_runtime_runs_turns_through_the_queue(db: Database, capacity: int) -> None:
    gate = QueueTurnGate()
    outcomes: list[Any] = []
    async with trio.open_nursery() as nursery:
        async with open_run_queue(gate.runner, MemoryJournal(), max_concurrent=1, capacity=capacity) as queue:
            gate.queue = queue
            rt = AgentRuntime(
                db=db,
                agent=Settings().agent,
                toolbox=AgentRuntime.from_settings(Settings(), db, wall_ms=lambda: 0).toolbox,
                gate=gate,
                wall_ms=lambda: 0,
            )
            rt.start(nursery)

            async def one(i: int) -> None:
                outcomes.append(
                    await rt.run_turn(TurnRequest("agent:main:q", "/tool time_now", run_id=f"q{i}"))
                )

            with trio.fail_after(10):
                async with trio.open_nursery() as inner:
                    for i in range(3):
                        inner.start_soon(one, i)
        nursery.cancel_scope.cancel()
    ok = [o for o in outcomes if o.status is TurnStatus.OK]
    refused = [o for o in outcomes if o.status is not TurnStatus.OK]
    if capacity == 8:
        assert len(ok) == 3
    else:  # a full lane refuses with the queue's clear error instead of queueing without bound
        assert ok
        assert refused
        assert all("full" in (o.error or "") for o in refused)
