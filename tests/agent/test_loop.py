"""The agent loop on a real store: tool path, no-model path, model path (loopback server), dedupe,
abort, time limit and recovery after a crash."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.agent import AgentRuntime, TurnPath, TurnRequest, TurnStatus
from appliance.agent.providers.openai import OpenAIProvider
from appliance.agent.toolbox import ExecOutput
from appliance.agent.turns import TurnRecord, begin_turn, ensure_turns_table
from appliance.config.settings import AgentSettings, SandboxSettings, Settings
from appliance.log import configure
from appliance.store import Database, get_session, history, open_database, usage_totals
from appliance.testing.openai_server import FakeModelServer, ModelReply

NOW = 1_795_420_774_708
KEY = "agent:main:main"


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.model_called = trio.Event()

    def __call__(self, event: str, payload: dict[str, Any], droppable: bool) -> None:
        json.dumps(payload)
        self.items.append((event, payload))
        if event == "agent" and payload["data"].get("phase") == "model":
            self.model_called.set()

    def chat_states(self) -> list[str]:
        return [p["state"] for e, p in self.items if e == "chat"]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "a.db")
    yield database
    database.close()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure(level="info", stream=buf, human=False)
    yield buf
    configure(level="info", human=False)


@pytest.fixture
async def model() -> AsyncIterator[FakeModelServer]:
    fake = FakeModelServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        yield fake
        nursery.cancel_scope.cancel()


def runtime(db: Database, *, provider: Any = None, settings: Settings | None = None) -> AgentRuntime:
    rt = AgentRuntime.from_settings(settings or Settings(), db, wall_ms=lambda: NOW, provider=provider)
    rt.start(None)
    return rt


def turns_finished(buf: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == "turn_finished"]


async def test_tool_time_now_streams_and_records(db: Database, log_lines: io.StringIO) -> None:
    rt = runtime(db)
    events = Events()
    with trio.fail_after(10):
        out = await rt.run_turn(TurnRequest(KEY, "/tool time_now", run_id="k1", request_id="req-1"), events)
    assert out.status is TurnStatus.OK
    assert out.path is TurnPath.TOOL
    assert out.reply == f"2026-11-23T07:59:34.708Z (epoch ms {NOW})"
    assert events.chat_states() == ["delta", "final"]
    names = [e for e, _ in events.items]
    assert names[0] == "task"
    assert names[-1] == "task"
    tool_phases = [p["data"]["phase"] for e, p in events.items if e == "agent" and p["stream"] == "tool"]
    assert tool_phases == ["start", "result"]
    session = get_session(db, KEY)
    assert session is not None
    msgs = history(db, KEY, session.session_id)
    assert [(m.role, m.idempotency_key) for m in msgs] == [("user", "k1:user"), ("assistant", "k1:assistant")]
    [line] = turns_finished(log_lines)
    assert line["request_id"] == "req-1"
    assert line["path"] == "tool"
    assert line["status"] == "ok"
    assert {"attempts", "latency_ms", "tokens"} <= set(line)


async def test_repeated_run_id_returns_the_first_result(db: Database) -> None:
    rt = runtime(db)
    with trio.fail_after(10):
        first = await rt.run_turn(TurnRequest(KEY, "/tool time_now", run_id="same"))
        again = await rt.run_turn(TurnRequest(KEY, "/tool model_info", run_id="same"))
    assert again.duplicate
    assert again.reply == first.reply
    session = get_session(db, KEY)
    assert session is not None
    assert len(history(db, KEY, session.session_id)) == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("/tool nope", "unknown tool"),
        ("/tool exec ls\x07", "control characters"),
        ("/tool exec ls", "sandbox not configured"),
        ("/tool session_tail x", "takes one number"),
    ],
)
async def test_tool_errors_are_clear_and_recorded(db: Database, text: str, needle: str) -> None:
    rt = runtime(db)
    events = Events()
    with trio.fail_after(10):
        out = await rt.run_turn(TurnRequest(KEY, text, run_id="bad"), events)
    assert out.status is TurnStatus.ERROR
    assert out.error is not None
    assert needle in out.error
    assert events.chat_states() == ["error"]
    session = get_session(db, KEY)
    assert session is not None
    last = history(db, KEY, session.session_id)[-1]
    assert last.role == "custom"
    assert needle in last.content["text"]


async def test_no_model_configured_answers_clearly(db: Database) -> None:
    rt = runtime(db)
    with trio.fail_after(10):
        out = await rt.run_turn(TurnRequest(KEY, "hello there"))
    assert out.status is TurnStatus.OK
    assert out.path is TurnPath.NONE
    assert out.reply.startswith("No model configured")
    with trio.fail_after(10):
        info = await rt.run_turn(TurnRequest(KEY, "/tool model_info"))
    assert "no model configured" in info.reply


async def test_session_tail_reads_the_transcript(db: Database) -> None:
    rt = runtime(db)
    with trio.fail_after(10):
        await rt.run_turn(TurnRequest(KEY, "first"))
        out = await rt.run_turn(TurnRequest(KEY, "/tool session_tail 3"))
    lines = out.reply.splitlines()
    assert lines[0] == "user: first"
    assert lines[-1] == "user: /tool session_tail 3"


def _provider(model: FakeModelServer, **kw: Any) -> OpenAIProvider:
    async def no_sleep(delay: float) -> None:
        await trio.lowlevel.checkpoint()

    return OpenAIProvider(model.base_url, models=("m1",), sleep=no_sleep, **kw)


async def test_model_path_streams_records_usage_and_history(db: Database, model: FakeModelServer) -> None:
    rt = runtime(db, provider=_provider(model))
    events = Events()
    with trio.fail_after(10):
        await rt.run_turn(TurnRequest(KEY, "earlier"))
        out = await rt.run_turn(TurnRequest(KEY, "how are you"), events)
    await rt.aclose()
    assert out.status is TurnStatus.OK
    assert out.path is TurnPath.MODEL
    assert out.reply == "echo: how are you"
    assert events.chat_states().count("delta") >= 2
    assert events.chat_states()[-1] == "final"
    sent = model.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert [m["content"] for m in sent[1:]] == ["earlier", "echo: earlier", "how are you"]
    session = get_session(db, KEY)
    assert session is not None
    assert session.tokens.total == 36
    assert usage_totals(db).total == 36


async def test_model_tool_calls_run_and_results_are_wrapped(db: Database, model: FakeModelServer) -> None:
    model.script.extend(
        [ModelReply(text="", tool_calls=(("time_now", "{}"),)), ModelReply(text="It is late.")]
    )
    rt = runtime(db, provider=_provider(model))
    events = Events()
    with trio.fail_after(10):
        out = await rt.run_turn(TurnRequest(KEY, "what time is it?"), events)
    await rt.aclose()
    assert out.reply == "It is late."
    assert out.attempts == 2
    tool_msg = model.requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool"
    assert "EXTERNAL_UNTRUSTED_CONTENT" in tool_msg["content"]
    assert str(NOW) in tool_msg["content"]
    assert any(e == "agent" and p["stream"] == "tool" for e, p in events.items)


async def test_model_failure_is_an_error_turn_not_a_crash(db: Database, model: FakeModelServer) -> None:
    model.default = ModelReply(status=500)
    rt = runtime(db, provider=_provider(model, max_attempts=2))
    events = Events()
    with trio.fail_after(10):
        out = await rt.run_turn(TurnRequest(KEY, "hi"), events)
    await rt.aclose()
    assert out.status is TurnStatus.ERROR
    assert out.error is not None
    assert "unavailable" in out.error
    assert events.chat_states()[-1] == "error"


async def test_turn_time_limit(db: Database, model: FakeModelServer) -> None:
    model.default = ModelReply(delay_s=5)
    settings = Settings(agent=AgentSettings(turn_timeout_s=1))
    rt = runtime(db, provider=_provider(model), settings=settings)
    with trio.fail_after(10):
        out = await rt.run_turn(TurnRequest(KEY, "hi"))
    await rt.aclose()
    assert out.status is TurnStatus.TIMEOUT


async def test_abort_cancels_a_running_turn(db: Database, model: FakeModelServer) -> None:
    model.default = ModelReply(delay_s=5)
    rt = runtime(db, provider=_provider(model))
    events = Events()
    with trio.fail_after(10):
        run = rt.submit(TurnRequest(KEY, "hi", run_id="slow"), events)
        await events.model_called.wait()
        assert rt.abort(session_key=KEY) == ["slow"]
        await run.done.wait()
    await rt.aclose()
    assert run.outcome is not None
    assert run.outcome.status is TurnStatus.ABORTED
    assert events.chat_states()[-1] == "aborted"


async def test_exec_goes_through_defender_then_sandbox(db: Database) -> None:
    settings = Settings(sandbox=SandboxSettings(backend="podman"))
    rt = runtime(db, settings=settings)
    ran: list[str] = []

    async def allow_ls(command: str, session_key: str) -> str | None:
        return None if command.startswith("ls") else "block (shell.destructive)"

    async def run(command: str, group: str) -> ExecOutput:
        ran.append(f"{group}:{command}")
        return ExecOutput(0, "a\nb\n", "")

    rt.toolbox.check_command = allow_ls
    rt.toolbox.run_exec = run
    with trio.fail_after(10):
        ok = await rt.run_turn(TurnRequest(KEY, "/tool exec ls"))
        blocked = await rt.run_turn(TurnRequest(KEY, "/tool exec rm -rf /"))
    assert ok.reply == "a\nb\n[exit 0]"
    assert blocked.status is TurnStatus.ERROR
    assert blocked.error is not None
    assert "refused by the defender" in blocked.error
    assert ran == ["main:ls"]


async def test_turns_left_running_by_a_crash_are_failed_and_reported(db: Database) -> None:
    ensure_turns_table(db)
    rt0 = runtime(db)
    with trio.fail_after(10):
        await rt0.run_turn(TurnRequest(KEY, "/tool time_now", run_id="done"))
    session = get_session(db, KEY)
    assert session is not None
    begin_turn(
        db,
        TurnRecord(
            run_id="cut",
            session_key=KEY,
            session_id=session.session_id,
            agent_id="main",
            request_id="r",
            status=TurnStatus.RUNNING,
            started_at=NOW,
        ),
    )
    rt = AgentRuntime.from_settings(Settings(), db, wall_ms=lambda: NOW + 5)
    recovered = rt.start(None)
    assert [r.run_id for r in recovered] == ["cut"]
    assert recovered[0].status is TurnStatus.ERROR
    last = history(db, KEY, session.session_id)[-1]
    assert last.role == "custom"
    assert last.content["customType"] == "run-failed-before-reply"
    assert rt.start(None) == []  # once only
    outcome = await rt.wait("cut", 0)
    assert outcome is not None
    assert outcome.status is TurnStatus.ERROR


async def test_defender_checker_scores_commands() -> None:
    from appliance.agent.toolbox import defender_checker

    check = defender_checker(Settings())
    with trio.fail_after(10):
        assert await check("ls -la", KEY) is None
        refusal = await check("rm -rf / --no-preserve-root", KEY)
    assert refusal is not None
    assert refusal.startswith(("block", "review"))
