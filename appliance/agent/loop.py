"""The agent loop (trio shell): one turn = user message in, streamed reply out, everything recorded.

A turn, in order:
1. the session exists (created on first use); a ``running`` turn row is written (:mod:`turns`); a run id
   already in the store returns the first outcome instead (dedupe);
2. the user message is appended to the transcript (idempotency key ``<runId>:user``);
3. under the gate (one turn per session, a global cap) and the turn's time limit, one path runs:
   ``tool`` (``/tool name args``, :mod:`tools`; a built-in or a plugin tool ``plugin_<p>__<t>``),
   ``model`` (the provider, offered the built-ins plus the plugin tools running now, with tool calls
   executed and their results wrapped as untrusted, at most ``max_tool_turns`` rounds), or ``none``
   (no provider configured: a clear "no model configured" reply);
4. the reply (or a ``run-failed-before-reply`` entry) is appended, usage is recorded, the turn row is
   finished, and one ``turn_finished`` log line is written (request_id, path, status, attempts,
   latency_ms, tokens).
Progress goes to an :data:`EventSink` as OpenClaw's ``agent``/``chat``/``task`` events (§6.4). Nothing
here raises for a failed turn: the outcome says how it ended.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from appliance.agent.gate import LocalTurnGate, TurnGate
from appliance.agent.prompt import (
    assistant_tool_calls,
    build_messages,
    tool_message,
    tool_schemas,
    wrap_tool_result,
)
from appliance.agent.providers.wire import Completion, Usage
from appliance.agent.toolbox import ModelInfo, Toolbox, ToolFailed, defender_checker, sandbox_runner
from appliance.agent.tools import (
    PluginToolCall,
    ToolCall,
    ToolName,
    ToolRefusal,
    parse_tool_command,
    split_plugin_tool_name,
    tool_names,
)
from appliance.agent.turns import (
    FAILED_BEFORE_REPLY,
    TurnPath,
    TurnRecord,
    TurnStatus,
    begin_turn,
    ensure_turns_table,
    finish_turn,
    get_turn,
    recover_interrupted,
)
from appliance.errors import ApplianceError
from appliance.log import bound_context, get_logger
from appliance.models.sessions import UsageRecord
from appliance.store import Database, append_message, ensure_session, history, record_usage, touch_session

if TYPE_CHECKING:
    from appliance.agent.providers.openai import TextSink
    from appliance.config.settings import AgentSettings, Settings

__all__ = [
    "AgentRuntime",
    "ChatProvider",
    "EventSink",
    "TurnOutcome",
    "TurnRequest",
    "no_model_reply",
]

log = get_logger("appliance.agent")

#: (event name, payload, droppable) -- droppable events (deltas) may be skipped for a slow client
EventSink = Callable[[str, dict[str, Any], bool], None]


def _discard(event: str, payload: dict[str, Any], droppable: bool) -> None:
    return None


class ChatProvider(Protocol):
    name: str
    base_url: str
    models: tuple[str, ...]

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        on_text: TextSink | None = None,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


def no_model_reply() -> str:
    return (
        "No model configured: this appliance has no model provider set (agent.provider_base_url), so I can "
        f"only run local tools. Try /tool {' , /tool '.join(tool_names())}."
    )


@attrs.frozen
class TurnRequest:
    session_key: str
    message: str
    run_id: str = attrs.Factory(lambda: uuid.uuid4().hex)
    agent_id: str = "main"
    request_id: str = attrs.Factory(lambda: uuid.uuid4().hex)


@attrs.frozen
class TurnOutcome:
    run_id: str
    session_key: str
    session_id: str
    agent_id: str
    status: TurnStatus
    path: TurnPath
    reply: str
    started_at: int
    ended_at: int | None
    error: str | None = None
    attempts: int = 0
    tokens: int = 0
    duplicate: bool = False

    @classmethod
    def of(cls, rec: TurnRecord, *, duplicate: bool = False) -> TurnOutcome:
        return cls(
            rec.run_id,
            rec.session_key,
            rec.session_id,
            rec.agent_id,
            rec.status,
            rec.path,
            rec.reply or "",
            rec.started_at,
            rec.ended_at,
            rec.error,
            rec.attempts,
            rec.total_tokens,
            duplicate,
        )

    @property
    def ok(self) -> bool:
        return self.status is TurnStatus.OK


@attrs.define
class _ActiveRun:
    request: TurnRequest
    done: trio.Event = attrs.Factory(trio.Event)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    outcome: TurnOutcome | None = None
    aborted: bool = False


@attrs.define
class _Progress:
    """What one turn has produced so far (events are numbered per run)."""

    request: TurnRequest
    session_id: str
    sink: EventSink
    wall_ms: Callable[[], int]
    seq: int = 0
    text: str = ""
    usage: Usage = attrs.Factory(Usage)
    attempts: int = 0
    model: str = ""

    def agent(self, stream: str, data: dict[str, Any]) -> None:
        self.seq += 1
        r = self.request
        payload = {
            "runId": r.run_id,
            "agentId": r.agent_id,
            "sessionId": self.session_id,
            "sessionKey": r.session_key,
            "stream": stream,
            "data": data,
            "seq": self.seq,
            "ts": self.wall_ms(),
        }
        self.sink("agent", payload, False)

    def chat(self, state: str, **fields: Any) -> None:
        r = self.request
        payload = {
            "runId": r.run_id,
            "sessionKey": r.session_key,
            "agentId": r.agent_id,
            "seq": self.seq,
            "state": state,
        }
        payload.update(fields)
        self.sink("chat", payload, state == "delta")

    async def delta(self, text: str) -> None:
        self.text += text
        self.chat("delta", deltaText=text, message=_assistant_message(self.text, self.wall_ms()))
        await trio.lowlevel.checkpoint()


def _assistant_message(text: str, ts: int) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": ts}


class AgentRuntime:
    """Runs turns. One per gateway; :meth:`start` recovers turns a crash left running."""

    def __init__(
        self,
        *,
        db: Database,
        agent: AgentSettings,
        toolbox: Toolbox,
        provider: ChatProvider | None = None,
        gate: TurnGate | None = None,
        wall_ms: Callable[[], int],
        max_concurrent: int = 2,
        max_history: int = 20,
    ) -> None:
        self.db = db
        self.agent = agent
        self.toolbox = toolbox
        self.provider = provider
        self.gate: TurnGate = gate or LocalTurnGate(max_concurrent)
        self.wall_ms = wall_ms
        self.max_history = max_history
        self._active: dict[str, _ActiveRun] = {}
        self._nursery: trio.Nursery | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        *,
        wall_ms: Callable[[], int],
        fallback_models: Sequence[str] = (),
        provider: ChatProvider | None = None,
    ) -> AgentRuntime:
        """Build the runtime the configuration asks for (the provider client is created here, lazily
        importing httpx, only when ``agent.provider_base_url`` is set)."""
        agent = settings.agent
        if provider is None and agent.provider_base_url:
            from appliance.agent.providers.openai import OpenAIProvider

            provider = OpenAIProvider(
                agent.provider_base_url,
                api_key=agent.provider_api_key,
                models=(agent.model, *(fallback_models or agent.fallback_model_list())),
                request_timeout_s=float(agent.request_timeout_s),
            )
        info = ModelInfo(
            provider.name if provider is not None else None,
            provider.base_url if provider is not None else "",
            provider.models if provider is not None else (),
        )
        backend = settings.sandbox.backend
        toolbox = Toolbox(
            db=db,
            wall_ms=wall_ms,
            model_info=info,
            output_cap_bytes=agent.output_cap_bytes,
            sandbox_backend=backend,
            check_command=defender_checker(settings) if backend != "none" else None,
            run_exec=sandbox_runner(settings) if backend != "none" else None,
        )
        return cls(
            db=db,
            agent=agent,
            toolbox=toolbox,
            provider=provider,
            wall_ms=wall_ms,
            max_concurrent=settings.queue.effective_concurrency(),
        )

    # -- lifetime --------------------------------------------------------------------------------

    def start(self, nursery: trio.Nursery | None = None) -> list[TurnRecord]:
        """Create the turns table, fail turns a crash left running (telling their sessions) and remember
        where background turns run (``None``: trio system tasks, for a runtime created on first use)."""
        self._nursery = nursery
        ensure_turns_table(self.db)
        recovered = recover_interrupted(self.db, now_ms=self.wall_ms())
        for rec in recovered:
            log.warning(
                "turn_recovered", run_id=rec.run_id, session_id=rec.session_key, status=str(rec.status)
            )
        return recovered

    async def aclose(self) -> None:
        for run in list(self._active.values()):
            run.scope.cancel()
        if self.provider is not None:
            await self.provider.aclose()

    # -- public surface ------------------------------------------------------------------------------

    def lookup(self, run_id: str) -> TurnOutcome | None:
        """A finished turn's outcome (the dedupe answer), or None when unknown or still running."""
        active = self._active.get(run_id)
        if active is not None:
            return active.outcome
        rec = get_turn(self.db, run_id)
        return TurnOutcome.of(rec, duplicate=True) if rec is not None and rec.finished else None

    def is_running(self, run_id: str) -> bool:
        return run_id in self._active

    def submit(self, request: TurnRequest, sink: EventSink = _discard) -> _ActiveRun:
        """Start a turn in the background (it outlives the request that asked for it); a run id that is
        already running returns that run."""
        active = self._active.get(request.run_id)
        if active is not None:
            return active
        run = _ActiveRun(request)
        self._active[request.run_id] = run

        async def body() -> None:
            try:
                run.outcome = await self._run(run, sink)
            except Exception as exc:  # a bug: never let it kill the gateway (system task) or the nursery
                log.exception("turn_crashed", exc, run_id=request.run_id)  # noqa: TRY401 -- our Logger takes it explicitly
            finally:
                self._active.pop(request.run_id, None)
                run.done.set()

        if self._nursery is not None:
            self._nursery.start_soon(body, name=f"turn:{request.run_id}")
        else:
            trio.lowlevel.spawn_system_task(body, name=f"turn:{request.run_id}")
        return run

    async def run_turn(self, request: TurnRequest, sink: EventSink = _discard) -> TurnOutcome:
        """Run a turn and wait for its outcome (a repeated run id gets the first outcome)."""
        done = self.lookup(request.run_id)
        if done is not None:
            return done
        run = self.submit(request, sink)
        await run.done.wait()
        return run.outcome if run.outcome is not None else self._crashed(request)

    async def wait(self, run_id: str, timeout_s: float | None = None) -> TurnOutcome | None:
        """The outcome of ``run_id`` once finished; None when unknown or not finished within the timeout."""
        active = self._active.get(run_id)
        if active is not None:
            with trio.move_on_after(timeout_s if timeout_s is not None else float("inf")):
                await active.done.wait()
            return active.outcome
        rec = get_turn(self.db, run_id)
        return TurnOutcome.of(rec) if rec is not None and rec.finished else None

    def abort(self, *, session_key: str | None = None, run_id: str | None = None) -> list[str]:
        """Cancel running turns (by run id, or every turn of a session); returns their run ids."""
        hit = [
            r
            for r in self._active.values()
            if (run_id is None or r.request.run_id == run_id)
            and (session_key is None or r.request.session_key == session_key)
        ]
        for run in hit:
            run.aborted = True
            run.scope.cancel()
        return [r.request.run_id for r in hit]

    # -- one turn -----------------------------------------------------------------------------------

    def _crashed(self, request: TurnRequest) -> TurnOutcome:
        rec = get_turn(self.db, request.run_id)
        if rec is not None and rec.finished:
            return TurnOutcome.of(rec)
        now = self.wall_ms()
        return TurnOutcome(
            request.run_id,
            request.session_key,
            "",
            request.agent_id,
            TurnStatus.ERROR,
            TurnPath.NONE,
            "",
            now,
            now,
            "internal error",
        )

    async def _run(self, run: _ActiveRun, sink: EventSink) -> TurnOutcome:
        request = run.request
        started = trio.current_time()
        now = self.wall_ms()
        session = ensure_session(self.db, key=request.session_key, agent_id=request.agent_id, now_ms=now)
        parsed = parse_tool_command(request.message)
        path = TurnPath.TOOL if parsed is not None else TurnPath.MODEL if self.provider else TurnPath.NONE
        rec, created = begin_turn(
            self.db,
            TurnRecord(
                run_id=request.run_id,
                session_key=request.session_key,
                session_id=session.session_id,
                agent_id=request.agent_id,
                request_id=request.request_id,
                status=TurnStatus.RUNNING,
                started_at=now,
                path=path,
                message=request.message[:4096],
            ),
        )
        if not created:
            return TurnOutcome.of(rec, duplicate=True)
        progress = _Progress(request, session.session_id, sink, self.wall_ms)
        with bound_context(
            request_id=request.request_id, run_id=request.run_id, session_id=request.session_key
        ):
            append_message(
                self.db,
                session_key=request.session_key,
                session_id=session.session_id,
                role="user",
                content=request.message,
                ts=now,
                idempotency_key=f"{request.run_id}:user",
            )
            self._task_event(progress, "running", now)
            progress.agent("lifecycle", {"phase": "start", "startedAt": now})
            status, reply, error = TurnStatus.OK, "", None
            with run.scope:
                with trio.move_on_after(self.agent.turn_timeout_s) as timer:
                    try:
                        async with self.gate.hold(request.session_key):
                            reply = await self._dispatch(path, parsed, request, session.session_id, progress)
                    except ToolFailed as exc:
                        status, error = TurnStatus.ERROR, exc.message
                    except ApplianceError as exc:
                        status, error = TurnStatus.ERROR, exc.message
                if timer.cancelled_caught:
                    status, error = TurnStatus.TIMEOUT, f"turn timed out after {self.agent.turn_timeout_s} s"
            if run.scope.cancelled_caught or run.aborted:
                status, error = TurnStatus.ABORTED, "aborted"
            return self._finish(progress, path, status, reply, error, started)

    async def _dispatch(
        self,
        path: TurnPath,
        parsed: ToolCall | PluginToolCall | ToolRefusal | None,
        request: TurnRequest,
        session_id: str,
        progress: _Progress,
    ) -> str:
        if isinstance(parsed, ToolRefusal):
            raise ToolFailed(parsed.message, details={"code": parsed.code})
        if isinstance(parsed, ToolCall | PluginToolCall):
            text = await self._tool(parsed, request, progress, call_id=f"{request.run_id}:tool")
            await progress.delta(text)
            return text
        if path is TurnPath.NONE:
            text = no_model_reply()
            await progress.delta(text)
            return text
        return await self._model(request, session_id, progress)

    async def _tool(
        self, call: ToolCall | PluginToolCall, request: TurnRequest, progress: _Progress, *, call_id: str
    ) -> str:
        name = str(call.name)
        progress.agent(
            "tool", {"phase": "start", "name": name, "toolCallId": call_id, "args": call.args[:200]}
        )
        try:
            if isinstance(call, PluginToolCall):
                text = await self.toolbox.run_plugin(call)
            else:
                text = await self.toolbox.run(call.name, call.args, session_key=request.session_key)
        except ToolFailed as exc:
            progress.agent(
                "tool", {"phase": "error", "name": name, "toolCallId": call_id, "error": exc.message}
            )
            raise
        progress.agent("tool", {"phase": "result", "name": name, "toolCallId": call_id, "isError": False})
        return text

    async def _model(self, request: TurnRequest, session_id: str, progress: _Progress) -> str:
        provider = self.provider
        assert provider is not None
        past = history(self.db, request.session_key, session_id, limit=self.max_history + 1)
        past = [m for m in past if m.idempotency_key != f"{request.run_id}:user"]
        messages = build_messages(request.agent_id, past, request.message, max_history=self.max_history)
        tools = tool_schemas() + await self.toolbox.plugin_schemas()
        progress.agent(
            "lifecycle", {"phase": "model", "provider": provider.name, "model": provider.models[0]}
        )
        for _round in range(self.agent.max_tool_turns):
            completion = await provider.complete(messages, tools=tools, on_text=progress.delta)
            progress.attempts += completion.attempts
            progress.usage = progress.usage + completion.usage
            progress.model = completion.model
            self._record_usage(request, session_id, provider.name, completion)
            if not completion.tool_calls:
                return completion.text
            messages.append(
                assistant_tool_calls(
                    completion.text, [(c.id, c.name, c.arguments) for c in completion.tool_calls]
                )
            )
            for call in completion.tool_calls:
                chosen = _model_tool_call(call.name, call.arguments)
                if chosen is None:
                    result = f"tool error: unknown tool {call.name!r}"
                else:
                    try:
                        result = await self._tool(chosen, request, progress, call_id=call.id)
                    except ToolFailed as exc:
                        result = exc.message
                boundary = secrets.token_hex(8)
                messages.append(
                    tool_message(call.id, wrap_tool_result(call.name, result, boundary_id=boundary))
                )
        raise ToolFailed(f"the model asked for tools more than {self.agent.max_tool_turns} times; stopped")

    def _record_usage(
        self, request: TurnRequest, session_id: str, provider: str, completion: Completion
    ) -> None:
        usage = completion.usage
        if not usage.total:
            return
        now = self.wall_ms()
        record_usage(
            self.db,
            UsageRecord(
                agent_id=request.agent_id,
                ts=now,
                day=dt.datetime.fromtimestamp(now / 1000, dt.UTC).strftime("%Y-%m-%d"),
                provider=provider,
                model=completion.model or "unknown",
                session_key=request.session_key,
                session_id=session_id,
                input=usage.input,
                output=usage.output,
                cache_read=usage.cache_read,
                total=usage.total,
            ),
        )

    def _finish(
        self,
        progress: _Progress,
        path: TurnPath,
        status: TurnStatus,
        reply: str,
        error: str | None,
        started: float,
    ) -> TurnOutcome:
        request = progress.request
        now = self.wall_ms()
        if status is TurnStatus.OK:
            append_message(
                self.db,
                session_key=request.session_key,
                session_id=progress.session_id,
                role="assistant",
                content=[{"type": "text", "text": reply}],
                ts=now,
                idempotency_key=f"{request.run_id}:assistant",
                usage=_usage_dict(progress.usage) if progress.usage.total else None,
            )
        else:
            append_message(
                self.db,
                session_key=request.session_key,
                session_id=progress.session_id,
                role="custom",
                content={
                    "customType": FAILED_BEFORE_REPLY,
                    "text": f"This turn ended before a reply: {error}",
                    "runId": request.run_id,
                },
                ts=now,
                idempotency_key=f"{request.run_id}:failed",
            )
        touch_session(self.db, request.session_key, now_ms=now)
        rec = finish_turn(
            self.db,
            request.run_id,
            status=status,
            path=path,
            ended_at=now,
            reply=reply if status is TurnStatus.OK else None,
            error=error,
            attempts=progress.attempts,
            total_tokens=progress.usage.total,
        )
        if status is TurnStatus.OK:
            progress.agent("lifecycle", {"phase": "end", "endedAt": now})
            progress.chat("final", message=_assistant_message(reply, now))
        else:
            progress.agent("lifecycle", {"phase": "error", "endedAt": now, "error": error})
            progress.chat("aborted" if status is TurnStatus.ABORTED else "error", errorMessage=error)
        self._task_event(progress, "succeeded" if status is TurnStatus.OK else "failed", now)
        latency_ms = round((trio.current_time() - started) * 1000, 3)
        log.info(
            "turn_finished",
            request_id=request.request_id,
            run_id=request.run_id,
            path=str(path),
            status=str(status),
            attempts=progress.attempts,
            latency_ms=latency_ms,
            tokens=progress.usage.total,
            error=error,
        )
        assert rec is not None
        return TurnOutcome.of(rec)

    def _task_event(self, progress: _Progress, status: str, now: int) -> None:
        r = progress.request
        task = {
            "id": r.run_id,
            "taskId": r.run_id,
            "kind": "agent",
            "runtime": "appliance",
            "status": status,
            "title": r.message[:80],
            "agentId": r.agent_id,
            "sessionKey": r.session_key,
            "ownerKey": r.session_key,
            "runId": r.run_id,
            "sourceId": r.run_id,
            "updatedAt": now,
        }
        progress.sink("task", {"action": "upserted", "task": task}, False)


def _model_tool_call(name: str, arguments: str) -> ToolCall | PluginToolCall | None:
    """What a model's function call names: a built-in, a plugin tool, or nothing we know."""
    split = split_plugin_tool_name(name)
    if split is not None:
        return PluginToolCall(split[0], split[1], arguments)
    try:
        return ToolCall(ToolName(name), arguments)
    except ValueError:
        return None


def _usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "input": usage.input,
        "output": usage.output,
        "cacheRead": usage.cache_read,
        "totalTokens": usage.total,
    }
