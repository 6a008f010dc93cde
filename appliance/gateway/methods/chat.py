"""``chat.send``, ``sessions.send``, ``chat.history``, ``chat.abort``, ``agent`` and ``agent.wait``.

Rules (``shared/specs/openclaw-gateway.md`` §1.2, §2.1, §6.4):
- a turn runs in the background on the gateway's :class:`~appliance.agent.AgentRuntime`, not in the
  request's task: a client that disconnects does not cancel it;
- ``runId`` is the request's ``idempotencyKey``; a repeated key runs nothing and answers the first result
  (``chat.send``: ``{runId, status:"started"}``; ``agent``: the first turn's final answer);
- progress goes to the calling connection and to the session's ``sessions.messages.subscribe``rs as
  ``task``, ``agent`` and ``chat`` events, plus ``session.message``/``sessions.changed`` (through
  ``state.fanout``; deltas are dropped for a slow client, the final/error event never);
- ``agent`` answers twice with the request's id: an early ``accepted`` ack through ``ctx.ack``, then the
  final ``{runId, status:"ok", summary}`` -- or an error frame (tool errors INVALID_REQUEST, timeouts
  AGENT_TIMEOUT, anything else UNAVAILABLE) when the turn failed;
- the runtime is attached by ``serve`` with :func:`attach_runtime`; without that, the first chat call
  creates one from the settings (turns then run as trio system tasks);
- :mod:`appliance.agent` is imported on the first chat call, not when the method table is built
  (cold start).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from appliance.errors import AgentTimeout, InvalidRequest, Unavailable
from appliance.gateway.dispatch import MethodContext, MethodTable, Scope
from appliance.gateway.subscriptions import history_entry
from appliance.models.convert import Params
from appliance.models.session_keys import DEFAULT_AGENT_ID, main_session_key, normalise_session_key
from appliance.store import count_messages, get_session, history

if TYPE_CHECKING:
    from appliance.agent import AgentRuntime, TurnOutcome
    from appliance.gateway.state import GatewayState

__all__ = ["attach_runtime", "runtime_for", "runtime_ready", "table"]

table = MethodTable()

HISTORY_LIMIT_DEFAULT = 200
HISTORY_LIMIT_MAX = 1000
MESSAGE_MAX_CHARS = 100_000
WAIT_MAX_MS = 600_000

#: by ``id(state)`` (GatewayState compares by value, so it cannot be a dict key); dropped with the state
_RUNTIMES: dict[int, AgentRuntime] = {}

_SEND_FIELDS = (
    "sessionKey",
    "key",
    "message",
    "idempotencyKey",
    "queueMode",
    "attachments",
    "thinking",
    "deliver",
    "timeoutMs",
    "agentId",
)
_AGENT_FIELDS = (
    "message",
    "sessionKey",
    "sessionId",
    "agentId",
    "idempotencyKey",
    "deliver",
    "channel",
    "to",
    "replyTo",
    "thinking",
    "timeout",
    "timeoutMs",
    "label",
    "lane",
    "extraSystemPrompt",
    "attachments",
)


def attach_runtime(state: GatewayState, runtime: AgentRuntime) -> None:
    """Use ``runtime`` for this gateway's chat methods (``serve`` calls it after ``runtime.start``)."""
    if id(state) not in _RUNTIMES:
        weakref.finalize(state, _RUNTIMES.pop, id(state), None)
    _RUNTIMES[id(state)] = runtime


async def runtime_ready(state: GatewayState) -> AgentRuntime:
    """The runtime, after starting the gateway's work services if ``serve`` provided them."""
    await state.ensure_services()
    return runtime_for(state)


def runtime_for(state: GatewayState) -> AgentRuntime:
    runtime = _RUNTIMES.get(id(state))
    if runtime is None:
        from appliance.agent import AgentRuntime

        runtime = AgentRuntime.from_settings(state.settings, state.db, wall_ms=state.wall_ms)
        runtime.start(None)
        attach_runtime(state, runtime)
    return runtime


def _sink(state: GatewayState, conn_id: str, session_key: str) -> Any:
    """Events of a run go to the connection that started it and to the session's message subscribers
    (``sessions.messages.subscribe``), through the gateway's one ``state.fanout``; a client that
    disconnected just misses them (the transcript keeps the result)."""
    return state.fanout.run_sink(session_key, origin_conn_id=conn_id)


def _session_key(p: Params, *names: str, required: bool = True) -> str:
    raw = None
    for name in names:
        raw = p.string(name)
        if raw is not None:
            break
    if raw is None or not raw.strip():
        if required:
            raise p.fail("", f"must have required property '{names[0]}'")
        return main_session_key(DEFAULT_AGENT_ID, "main")
    return str(normalise_session_key(raw, field=names[0]))


def _message(p: Params) -> str:
    text = p.string("message")
    if text is None:
        raise p.fail("", "must have required property 'message'")
    if len(text) > MESSAGE_MAX_CHARS:
        raise p.fail("message", f"must NOT have more than {MESSAGE_MAX_CHARS} characters")
    if not text.strip():
        raise p.fail("message", "must NOT be empty")
    return text


def _idempotency_key(p: Params, *, required: bool) -> str | None:
    key = p.non_empty("idempotencyKey", required=required)
    if key is not None and len(key) > 256:
        raise p.fail("idempotencyKey", "must NOT have more than 256 characters")
    return key


def _agent_id(session_key: str) -> str:
    parts = session_key.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "agent" else DEFAULT_AGENT_ID


async def _start_chat(ctx: MethodContext, method: str, params: dict[str, Any]) -> dict[str, Any]:
    p = Params(method, params, _SEND_FIELDS)
    key = _session_key(p, "sessionKey", "key", required=method == "chat.send")
    message = _message(p)
    run_id = _idempotency_key(p, required=method == "chat.send")
    from appliance.agent import TurnRequest

    runtime = await runtime_ready(ctx.state)
    request = TurnRequest(session_key=key, message=message, agent_id=_agent_id(key), request_id=ctx.req_id)
    if run_id is not None:
        request = TurnRequest(
            session_key=key, message=message, run_id=run_id, agent_id=_agent_id(key), request_id=ctx.req_id
        )
        if runtime.lookup(run_id) is not None or runtime.is_running(run_id):
            return {"runId": run_id, "status": "started"}
    runtime.submit(request, _sink(ctx.state, ctx.conn_id, key))
    return {"runId": request.run_id, "status": "started"}


@table.method("chat.send", scope=Scope.WRITE)
async def chat_send(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    return await _start_chat(ctx, "chat.send", params)


@table.method("sessions.send", scope=Scope.WRITE)
async def sessions_send(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    return await _start_chat(ctx, "sessions.send", params)


@table.method("chat.history")
async def chat_history(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("chat.history", params, ("sessionKey", "key", "limit", "cursor", "beforeSeq", "agentId"))
    key = _session_key(p, "sessionKey", "key")
    limit = p.integer("limit", default=HISTORY_LIMIT_DEFAULT, minimum=1, maximum=HISTORY_LIMIT_MAX)
    assert limit is not None
    before = p.integer("beforeSeq", minimum=1)
    cursor = p.string("cursor")
    if cursor is not None:
        if not cursor.isdigit() or int(cursor) < 1:
            raise p.fail("cursor", "must be a message sequence number")
        before = int(cursor)
    await runtime_ready(ctx.state)  # a first call after a restart reports turns a crash cut short
    db = ctx.state.db
    rec = get_session(db, key)
    if rec is None:
        return {"sessionKey": key, "sessionId": None, "messages": [], "hasMore": False, "totalMessages": 0}
    msgs = history(db, key, rec.session_id, limit=limit + 1, before_seq=before)
    has_more = len(msgs) > limit
    msgs = msgs[-limit:] if has_more else msgs
    out: dict[str, Any] = {
        "sessionKey": key,
        "sessionId": rec.session_id,
        "messages": [history_entry(m) for m in msgs],
        "hasMore": has_more,
        "totalMessages": count_messages(db, key, rec.session_id),
    }
    if has_more and msgs:
        out["nextCursor"] = str(msgs[0].seq)
    return out


@table.method("chat.abort", scope=Scope.WRITE)
async def chat_abort(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("chat.abort", params, ("sessionKey", "key", "runId"))
    key = _session_key(p, "sessionKey", "key")
    run_id = p.non_empty("runId")
    aborted = (await runtime_ready(ctx.state)).abort(session_key=key, run_id=run_id)
    return {"ok": True, "aborted": bool(aborted), "runIds": aborted}


@table.method("agent", scope=Scope.WRITE)
async def agent(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("agent", params, _AGENT_FIELDS)
    message = _message(p)
    run_id = _idempotency_key(p, required=True)
    assert run_id is not None
    key = _session_key(p, "sessionKey", required=False)
    agent_id = p.non_empty("agentId") or _agent_id(key)
    runtime = await runtime_ready(ctx.state)
    accepted = {
        "runId": run_id,
        "sessionKey": key,
        "agentId": agent_id,
        "status": "accepted",
        "acceptedAt": ctx.state.wall_ms(),
    }
    if ctx.ack is not None:
        await ctx.ack(accepted)
    outcome = runtime.lookup(run_id)
    if outcome is None:
        from appliance.agent import TurnRequest

        request = TurnRequest(
            session_key=key, message=message, run_id=run_id, agent_id=agent_id, request_id=ctx.req_id
        )
        run = runtime.submit(request, _sink(ctx.state, ctx.conn_id, key))
        await run.done.wait()
        outcome = run.outcome or runtime.lookup(run_id)
    if outcome is None:
        raise Unavailable("internal error")
    return _final(outcome)


def _final(outcome: TurnOutcome) -> dict[str, Any]:
    """The second ``agent`` response: the payload on success, else the matching error."""
    from appliance.agent import TurnPath, TurnStatus

    if outcome.status is TurnStatus.OK:
        return {
            "runId": outcome.run_id,
            "status": "ok",
            "summary": outcome.reply,
            "result": {"payloads": [{"text": outcome.reply}], "meta": {"path": str(outcome.path)}},
        }
    message = outcome.error or str(outcome.status)
    details = {"runId": outcome.run_id, "status": str(outcome.status), "path": str(outcome.path)}
    if outcome.status is TurnStatus.TIMEOUT:
        raise AgentTimeout(message, details=details)
    if outcome.path is TurnPath.TOOL:
        raise InvalidRequest(message, details=details)
    raise Unavailable(message, details=details)


@table.method("agent.wait")
async def agent_wait(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("agent.wait", params, ("runId", "timeoutMs"))
    run_id = p.non_empty("runId", required=True)
    assert run_id is not None
    timeout_ms = p.integer("timeoutMs", default=30_000, minimum=0, maximum=WAIT_MAX_MS)
    assert timeout_ms is not None
    outcome = await (await runtime_ready(ctx.state)).wait(run_id, timeout_ms / 1000)
    if outcome is None:
        return {"runId": run_id, "status": "timeout"}
    out: dict[str, Any] = {
        "runId": run_id,
        "status": "ok" if outcome.ok else "error",
        "startedAt": outcome.started_at,
        "endedAt": outcome.ended_at,
    }
    if not outcome.ok:
        out["error"] = outcome.error
    return out
