"""Child process for the crash test: accepts 200 items into a SQLite journal and runs them slowly.

Prints ``ack <item_id>`` once ``enqueue`` returned (the item is acknowledged) and ``start <item_id>``
when a run begins; the parent kills it with SIGKILL part-way through.
"""

from __future__ import annotations

import sys

import apsw
import trio

from appliance.queue import QueueItem, SqliteJournal, make_item, open_run_queue


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def runner(item: QueueItem) -> str:
    say(f"start {item.item_id}")
    await trio.sleep(1.0)  # long enough that the run the parent sees start is still going at the kill
    return f"result {item.item_id}"


async def main(path: str, count: int) -> None:
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000")
    journal = SqliteJournal(conn)
    async with open_run_queue(runner, journal, max_concurrent=2, capacity=count) as queue:
        for n in range(count):
            admission = await queue.enqueue(make_item(f"s{n % 20}", f"m{n}", item_id=f"item-{n:03d}"))
            say(f"ack {admission.item.item_id}")
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
