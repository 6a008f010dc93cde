"""Queue and scheduler figures: enqueue-to-start latency at a steady rate, and scheduler idle cost.

    .venv/bin/python bench/bench_queue.py                    # 200 items/s for 10 s, 60 idle seconds
    .venv/bin/python bench/bench_queue.py --journal sqlite   # with the SQLite journal (WAL) in a temp dir
    .venv/bin/python bench/bench_queue.py --idle-seconds 5

Targets (issue 3): p99 enqueue-to-start <= 5 ms with a no-op runner; 0 scheduler wake-ups when idle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import apsw
import trio

from appliance.log import configure
from appliance.models.tasks import TaskSpec
from appliance.queue import MemoryJournal, QueueItem, QueueJournal, SqliteJournal, make_item, open_run_queue
from appliance.scheduler import MemoryTaskStore, open_scheduler


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_latency(
    rate: float, items: int, sessions: int, journal: QueueJournal, concurrency: int
) -> None:
    enqueued: dict[str, float] = {}
    latencies: list[float] = []
    done = trio.Event()

    async def runner(item: QueueItem) -> None:
        latencies.append(time.perf_counter() - enqueued[item.item_id])
        if len(latencies) == items:
            done.set()

    async with open_run_queue(runner, journal, max_concurrent=concurrency, capacity=items) as queue:
        period = 1 / rate
        start = trio.current_time()
        for n in range(items):
            await trio.sleep_until(start + n * period)
            item = make_item(f"agent:main:s{n % sessions}", "ping", item_id=f"i{n}")
            enqueued[item.item_id] = time.perf_counter()
            await queue.enqueue(item)
        with trio.fail_after(30):
            await done.wait()
    ms = [v * 1000 for v in latencies]
    print(
        f"enqueue-to-start latency at {rate:.0f} items/s, {items} items, {sessions} sessions, gate {concurrency}: "
        f"p50 {statistics.median(ms):.3f} ms  p99 {percentile(ms, 0.99):.3f} ms  max {max(ms):.3f} ms  "
        f"(target p99 <= 5 ms)"
    )


async def bench_idle(seconds: float) -> None:
    async def dispatch(*_: object) -> None:
        return None

    async with open_scheduler(MemoryTaskStore(), dispatch) as sched:
        now = time.time_ns() // 1_000_000
        sched.add(name="daily", spec=TaskSpec.cron("0 3 * * *", "Europe/Berlin"), prompt="p", session_key="k")
        sched.add(name="later", spec=TaskSpec.once(now + 86_400_000), prompt="p", session_key="k")
        await trio.sleep(0.1)  # let the loop take in the adds
        wakeups_before = sched.wakeups
        cpu_before = time.process_time()
        wall_before = time.monotonic()
        await trio.sleep(seconds)
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        wakeups = sched.wakeups - wakeups_before
    print(
        f"scheduler idle for {wall:.1f} s with 2 tasks not due: CPU {cpu * 1000:.2f} ms, "
        f"wake-ups {wakeups} (target 0)"
    )


async def main(args: argparse.Namespace) -> None:
    configure(level="warning", stream=sys.stderr, human=False)
    with tempfile.TemporaryDirectory() as tmp:
        journal: QueueJournal
        if args.journal == "sqlite":
            conn = apsw.Connection(str(Path(tmp) / "queue.db"))
            conn.execute(
                f"PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint={args.wal_autocheckpoint}"
            )
            journal = SqliteJournal(conn)
        else:
            journal = MemoryJournal()
        await bench_latency(args.rate, args.items, args.sessions, journal, args.concurrency)
    await bench_idle(args.idle_seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="items per second")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--journal", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--wal-autocheckpoint", type=int, default=1000, help="pages; 0 = never (checkpoint elsewhere)"
    )
    trio.run(main, parser.parse_args())
