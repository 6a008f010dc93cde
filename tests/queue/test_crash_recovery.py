from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import apsw
import trio
import trio.lowlevel

from appliance.queue import ItemState, QueueItem, SqliteJournal, open_run_queue

CHILD = Path(__file__).with_name("crash_child.py")
REPO = Path(__file__).resolve().parents[2]


def run_child_until_killed(db: Path, count: int) -> tuple[list[str], list[str]]:
    """Start the child, wait until every item is acknowledged and a few runs began, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "APPLIANCE_LOG_FORMAT": "json"}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(60, child.kill)
    watchdog.start()
    acked: list[str] = []
    started: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            verb, item_id = line.split()
            (acked if verb == "ack" else started).append(item_id)
            if len(acked) == count and len(started) >= 3 and verb == "start":
                child.send_signal(signal.SIGKILL)  # while that run sleeps: it is marked running
                break
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked, started


async def test_kill_9_then_every_acknowledged_item_completes_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    count = 200
    acked, started = await trio.to_thread.run_sync(run_child_until_killed, db, count)
    assert len(acked) == count
    assert len(started) >= 3

    conn = apsw.Connection(str(db))
    journal = SqliteJournal(conn)
    states = {r.item.item_id: r.state for r in journal.records()}
    assert set(acked) <= set(states)
    assert ItemState.RUNNING in states.values()  # killed mid-run
    assert ItemState.QUEUED in states.values()  # and with work still waiting
    done_before = {i for i, s in states.items() if s is ItemState.DONE}

    reran: list[str] = []

    async def runner(item: QueueItem) -> str:
        reran.append(item.item_id)
        await trio.lowlevel.checkpoint()
        return f"result {item.item_id}"

    with trio.fail_after(60):
        async with open_run_queue(runner, journal, max_concurrent=2, capacity=count) as queue:
            await queue.wait_idle()

    records = {r.item.item_id: r for r in journal.records()}
    for item_id in acked:
        record = records[item_id]
        assert record.state is ItemState.DONE, item_id
        assert record.completions == 1, item_id
        assert record.result == f"result {item_id}"
    assert not done_before & set(reran)  # nothing done before the crash ran again
    assert len(reran) == len(set(reran)) == count - len(done_before)
    # per-session order survived the restart
    for s in range(20):
        mine = [i for i in reran if int(i.split("-")[1]) % 20 == s]
        assert mine == sorted(mine)
    conn.close()
