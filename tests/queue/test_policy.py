from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import ErrorCode, QueueFull
from appliance.queue import (
    Activation,
    AdmissionKind,
    DedupeCache,
    ItemKind,
    Parked,
    QueueItem,
    QueueMode,
    QueuePolicy,
    Retry,
    admits_group_message,
    backoff_ms,
    mentions_assistant,
)

_ids = itertools.count()


def item(session: str = "s", text: str = "", kind: ItemKind = ItemKind.PROMPT, **kw: object) -> QueueItem:
    return QueueItem(item_id=f"i{next(_ids)}", session_key=session, kind=kind, text=text, **kw)  # type: ignore[arg-type]


def policy(**kw: object) -> QueuePolicy:
    args: dict[str, object] = {"max_concurrent": 1, "capacity": 8, "random": lambda: 0.5}
    args.update(kw)
    return QueuePolicy(**args)  # type: ignore[arg-type]


def run_one(p: QueuePolicy) -> QueueItem:
    taken = p.take()
    assert taken is not None
    p.complete(taken)
    return taken


def drain(p: QueuePolicy) -> list[str]:
    out = []
    while (taken := p.take()) is not None:
        out.append(taken.text)
        p.complete(taken)
    return out


# -- modes -------------------------------------------------------------------------------------------


def test_followup_keeps_every_follow_up_in_order() -> None:
    p = policy()
    p.offer(item(text="first"))
    running = p.take()
    assert running is not None
    for text in ("a", "b", "c"):
        assert p.offer(item(text=text)).kind is AdmissionKind.QUEUED
    p.complete(running)
    assert drain(p) == ["a", "b", "c"]


def test_steer_keeps_only_the_latest_pending_follow_up() -> None:
    p = policy(default_mode=QueueMode.STEER)
    p.offer(item(text="first"))
    running = p.take()
    assert running is not None
    a = item(text="a")
    p.offer(a)
    admission = p.offer(item(text="b"))
    assert admission.kind is AdmissionKind.REPLACED
    assert admission.supersedes == (a.item_id,)
    c = p.offer(item(text="c"))
    assert c.kind is AdmissionKind.REPLACED
    p.complete(running)
    assert drain(p) == ["c"]


def test_steer_never_drops_tasks() -> None:
    p = policy(default_mode=QueueMode.STEER)
    p.offer(item(text="first"))
    running = p.take()
    assert running is not None
    p.offer(item(text="a"))
    p.offer(item(text="task", kind=ItemKind.TASK))
    p.offer(item(text="b"))
    p.complete(running)
    assert drain(p) == ["task", "b"]


def test_collect_merges_prompt_only_follow_ups_into_one_turn() -> None:
    p = policy(default_mode=QueueMode.COLLECT)
    p.offer(item(text="first"))
    running = p.take()
    assert running is not None
    p.offer(item(text="a"))
    merged = p.offer(item(text="b"))
    assert merged.kind is AdmissionKind.MERGED
    p.offer(item(text="c"))
    p.offer(item(text="with file", attachments=("f.png",)))  # not prompt-only: its own turn
    p.offer(item(text="d"))
    p.complete(running)
    assert drain(p) == ["a\n\nb\n\nc", "with file", "d"]


def test_modes_apply_only_to_follow_ups() -> None:
    for mode in QueueMode:
        p = policy(default_mode=mode)
        assert p.offer(item(session=str(mode), text="x")).kind is AdmissionKind.QUEUED


def test_per_request_mode_overrides_session_mode() -> None:
    p = policy()
    p.set_mode("s", QueueMode.COLLECT)
    assert p.mode_of("s") is QueueMode.COLLECT
    p.offer(item(text="first"))
    p.offer(item(text="a"))
    assert p.offer(item(text="b"), mode=QueueMode.FOLLOWUP).kind is AdmissionKind.QUEUED


def test_plan_changes_nothing_until_applied() -> None:
    p = policy(default_mode=QueueMode.STEER)
    p.offer(item(text="first"))
    assert p.take() is not None
    p.offer(item(text="a"))
    assert p.plan(item(text="b")).kind is AdmissionKind.REPLACED
    assert [i.text for i in p.pending_of("s")] == ["a"]


# -- activation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["@Andy hello", "@andy hi", "@ANDY x", "@Andy", "@Andy's thing", "hey @Andy, look"]
)
def test_mentions(text: str) -> None:
    assert mentions_assistant(text, ["Andy"])


@pytest.mark.parametrize("text", ["@Andyextra hello", "Andy hello", "mail andy@andy.org", "hello", ""])
def test_not_mentions(text: str) -> None:
    assert not mentions_assistant(text, ["Andy"])


def test_group_activation() -> None:
    assert not admits_group_message(Activation.MENTION, "hello", ["Andy"])
    assert admits_group_message(Activation.MENTION, "@Andy hello", ["Bot", "Andy"])
    assert admits_group_message(Activation.MENTION, "hello", ["Andy"], explicit=True)
    assert admits_group_message(Activation.ALWAYS, "hello", ["Andy"])
    assert mentions_assistant("@C.L.A.U.D.E hello", ["C.L.A.U.D.E"])
    assert not mentions_assistant("@CXLXAUXDXE hello", ["C.L.A.U.D.E"])


# -- bounds ------------------------------------------------------------------------------------------


def test_full_lane_raises_queue_full_with_retry_after() -> None:
    p = policy(capacity=2)
    p.offer(item(text="run"))
    running = p.take()
    assert running is not None
    p.offer(item())
    p.offer(item())
    with pytest.raises(QueueFull) as info:
        p.offer(item())
    wire = info.value.to_wire()
    assert wire["code"] == ErrorCode.UNAVAILABLE
    assert wire["retryable"] is True
    assert 100 <= wire["retryAfterMs"] <= 60_000
    p.complete(running, run_ms=4000)
    assert p.retry_after_ms() > 1000  # the estimate follows observed run times
    assert p.take() is not None
    p.offer(item())  # a waiting slot freed when the next item started


def test_full_queue_across_sessions() -> None:
    p = policy(capacity=4, total_capacity=3)
    for n in range(3):
        p.offer(item(session=f"s{n}"))
    with pytest.raises(QueueFull):
        p.offer(item(session="other"))


def test_steer_and_collect_do_not_grow_a_full_lane() -> None:
    for mode in (QueueMode.STEER, QueueMode.COLLECT):
        p = policy(capacity=1, default_mode=mode)
        p.offer(item(text="run"))
        assert p.take() is not None
        p.offer(item(text="a"))
        assert p.offer(item(text="b")).kind is not AdmissionKind.QUEUED


# -- gate and fairness ---------------------------------------------------------------------------------


def test_gate_and_one_run_per_session() -> None:
    p = policy(max_concurrent=2)
    for session in ("a", "a", "b", "c"):
        p.offer(item(session=session, text=session))
    first, second = p.take(), p.take()
    assert first is not None
    assert second is not None
    assert {first.session_key, second.session_key} == {"a", "b"}
    assert p.take() is None  # gate full
    p.complete(first)
    third = p.take()
    assert third is not None
    assert third.session_key == "c"  # round robin: c waited longer than a's second item


def test_noisy_session_cannot_starve_others() -> None:
    p = policy(max_concurrent=1, capacity=100)
    for n in range(50):
        p.offer(item(session="noisy", text=f"n{n}"))
    p.offer(item(session="quiet", text="q"))
    order = [run_one(p).session_key for _ in range(3)]
    assert "quiet" in order


# -- retries -----------------------------------------------------------------------------------------


@given(
    attempt=st.integers(1, 80),
    base=st.integers(1, 10_000),
    cap=st.integers(1, 3_600_000),
    r=st.floats(0, 0.999),
)
def test_backoff_is_full_jitter_under_the_capped_exponential(
    attempt: int, base: int, cap: int, r: float
) -> None:
    delay = backoff_ms(attempt, base_ms=base, cap_ms=cap, random=lambda: r)
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1))


def test_backoff_schedule_with_max_jitter() -> None:
    delays = [backoff_ms(n, base_ms=500, cap_ms=3000, random=lambda: 0.999999) for n in range(1, 6)]
    assert delays == [499, 999, 1999, 2999, 2999]


def test_failed_item_keeps_head_of_lane_then_parks() -> None:
    p = policy(max_attempts=3)
    first = item(text="first")
    p.offer(first)
    p.offer(item(text="second"))
    outcomes = []
    for _ in range(3):
        taken = p.take()
        assert taken is not None
        assert taken.text == "first"
        outcome = p.fail(taken)
        outcomes.append(outcome)
        if isinstance(outcome, Retry):
            assert p.take() is None  # "second" waits behind the backing-off head
            p.retry_due("s")
    assert [type(o) for o in outcomes] == [Retry, Retry, Parked]
    assert p.parked[0].item.item_id == first.item_id
    assert drain(p) == ["second"]


def test_backoff_frees_the_gate_for_other_sessions() -> None:
    p = policy(max_concurrent=1)
    p.offer(item(session="a"))
    p.offer(item(session="b"))
    taken = p.take()
    assert taken is not None
    assert isinstance(p.fail(taken), Retry)
    other = p.take()
    assert other is not None
    assert other.session_key == "b"


def test_non_retryable_failure_parks_at_once() -> None:
    p = policy()
    p.offer(item())
    taken = p.take()
    assert taken is not None
    assert isinstance(p.fail(taken, retryable=False), Parked)
    assert p.is_idle()


# -- dedupe ------------------------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    ops=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5_000)), max_size=300),
    bound=st.integers(1, 16),
    ttl=st.integers(1, 2_000),
)
def test_dedupe_never_exceeds_its_bound_and_returns_first_result(
    ops: list[tuple[int, int]], bound: int, ttl: int
) -> None:
    cache: DedupeCache[str] = DedupeCache(ttl_ms=ttl, max_entries=bound)
    now = 0
    for n, (key_n, step) in enumerate(ops):
        now += step
        key = f"k{key_n}"
        before = cache.get(key, now)
        stored = cache.put(key, f"v{n}", now)
        if before is not None:
            assert stored == before  # within TTL: the first result, not the new one
        assert len(cache) <= bound


def test_dedupe_ttl_and_eviction() -> None:
    cache: DedupeCache[str] = DedupeCache(ttl_ms=100, max_entries=2)
    assert cache.put("a", "first", 0) == "first"
    assert cache.put("a", "second", 50) == "first"
    assert cache.get("a", 99) == "first"
    assert cache.get("a", 100) is None
    cache.put("b", "b", 100)
    cache.put("c", "c", 101)
    cache.put("d", "d", 102)
    assert cache.get("b", 103) is None  # oldest evicted
    assert cache.get("d", 103) == "d"
    cache.load({"x": ("x", 50), "y": ("y", 200)}, 160)
    assert cache.get("x", 160) is None  # expired before loading
    assert cache.get("y", 160) == "y"
