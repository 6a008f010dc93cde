from __future__ import annotations

from collections.abc import Iterator

import apsw
import attrs
import pytest

from appliance.queue import ItemState, MemoryJournal, QueueJournal, SqliteJournal, make_item


@pytest.fixture(params=["memory", "sqlite"])
def journal(request: pytest.FixtureRequest) -> Iterator[QueueJournal]:
    if request.param == "memory":
        yield MemoryJournal()
        return
    conn = apsw.Connection(":memory:")
    yield SqliteJournal(conn, now_ms=lambda: 1_000)
    conn.close()


def test_lifecycle_and_done_only_once(journal: QueueJournal) -> None:
    item = make_item("s", "hello", idempotency_key="k")
    journal.accept(item)
    assert journal.pending() == [item]
    journal.mark_running(item)
    assert journal.mark_done(item, "r1")
    assert not journal.mark_done(item, "r2")  # a second completion is refused
    record = journal.get(item.item_id)
    assert record is not None
    assert (record.state, record.result, record.completions) == (ItemState.DONE, "r1", 1)
    found = journal.lookup("k")
    assert found is not None
    assert found.item.item_id == item.item_id
    assert journal.pending() == []


def test_supersede_retry_fail_and_recover(journal: QueueJournal) -> None:
    a, b, c = make_item("s", "a"), make_item("s", "b"), make_item("t", "c")
    journal.accept(a)
    journal.accept(b, supersedes=[a.item_id])
    journal.accept(c)
    assert [i.item_id for i in journal.pending()] == [b.item_id, c.item_id]
    journal.mark_running(b)
    journal.mark_retry(b, "boom")
    journal.mark_running(c)
    recovered = journal.recover()
    assert [i.item_id for i in recovered] == [b.item_id, c.item_id]
    journal.mark_running(c)
    journal.mark_failed(c, "fatal")
    failed = journal.failed()
    assert [(r.item.item_id, r.error) for r in failed] == [(c.item_id, "fatal")]
    superseded = journal.get(a.item_id)
    assert superseded is not None
    assert superseded.state is ItemState.SUPERSEDED


def test_sqlite_keeps_attempts_and_reuses_expired_keys() -> None:
    conn = apsw.Connection(":memory:")
    journal = SqliteJournal(conn, now_ms=lambda: 5_000)
    first = make_item("s", "a", idempotency_key="k")
    journal.accept(first)
    journal.mark_running(first)
    journal.mark_retry(attrs.evolve(first, attempt=2), "boom")
    assert journal.pending()[0].attempt == 2
    again = make_item("s", "b", idempotency_key="k", item_id="other")
    journal.accept(again)  # the caller decided the old key expired
    found = journal.lookup("k")
    assert found is not None
    assert found.item.item_id == "other"
    journal.mark_running(again)
    journal.mark_done(again, None)
    assert journal.prune(before_ms=6_000) == 1
    conn.close()
