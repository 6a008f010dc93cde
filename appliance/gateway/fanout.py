"""The one broadcaster for session events: ``state.fanout`` (a thin shell over :mod:`.subscriptions`).

Every source of a conversation publishes here, whatever started it: ``chat.send``/``sessions.send``/
``agent`` from a WebSocket, and channel turns from the runtime (``appliance.runtime.channels``). It
decides recipients with the sans-IO rules of :mod:`appliance.gateway.subscriptions` and hands each
event to :meth:`GatewayState.broadcast`, which serialises it once and queues it on every recipient's
own outbox (numbered with that connection's ``seq``; a client past ``max_buffered_bytes`` skips
droppable events and is closed 1008 "slow consumer" on the next one, as OpenClaw 2026.9.6's
``createGatewayBroadcaster`` does). Nothing here awaits: publishing never waits on a peer, so a slow
client cannot hold up a turn or another client. Call it from the trio thread.

Publishing never raises into the caller: a payload that is not JSON (our bug) is logged and dropped,
so a broken event can never end a turn.

Hook for other sources (``appliance.runtime``)::

    sink = state.fanout.run_sink(session_key)        # an agent EventSink: pass it to runtime.submit
    state.fanout.publish_session_message(key, msg)   # a transcript line appended outside a run
    state.fanout.publish_sessions_changed(key, reason="patch")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from appliance.gateway.subscriptions import (
    SubscriptionRegistry,
    history_entry,
    lifecycle_phase,
    run_event_recipients,
    session_message_payload,
    session_message_recipients,
    sessions_changed_payload,
    sessions_changed_recipients,
    transcript_suffixes,
)
from appliance.log import get_logger
from appliance.models.sessions import TranscriptMessage

if TYPE_CHECKING:
    from appliance.gateway.state import GatewayState

__all__ = ["RunEventSink", "SessionFanout"]

log = get_logger("appliance.gateway.fanout")

#: the agent loop's sink: ``(event, payload, droppable)`` (``appliance.agent.EventSink``)
RunEventSink = Callable[[str, dict[str, Any], bool], None]

#: how far back to look for the transcript line a run event announces (user, reply: the last few)
_TAIL = 4


class SessionFanout:
    """Subscriptions and publishing for one gateway (see the module docstring)."""

    __slots__ = ("_state", "legacy_broadcast", "registry")

    def __init__(self, state: GatewayState, *, legacy_broadcast: bool = False) -> None:
        self._state = state
        self.registry = SubscriptionRegistry()
        #: send run events to *every* operator without the ``session-scoped-events`` cap, as OpenClaw
        #: does; off: only the cap-less ones that called ``sessions.subscribe`` (see subscriptions)
        self.legacy_broadcast = legacy_broadcast

    def __repr__(self) -> str:
        return f"<SessionFanout subscriptions={self.registry.subscription_count()}>"

    # -- connections (the server calls these)

    def connection_opened(self, conn_id: str, caps: Iterable[str] = ()) -> None:
        self.registry.connect(conn_id, caps)

    def connection_closed(self, conn_id: str) -> None:
        """Unsubscribe ``conn_id`` from everything (the socket is gone)."""
        dropped = self.registry.drop(conn_id)
        if dropped:
            log.debug("subscriptions_dropped", conn_id=conn_id, subscriptions=dropped)

    # -- subscriptions (the methods call these)

    def subscribe_sessions(self, conn_id: str) -> bool:
        return self.registry.subscribe_sessions(conn_id)

    def unsubscribe_sessions(self, conn_id: str) -> bool:
        return self.registry.unsubscribe_sessions(conn_id)

    def subscribe_messages(self, conn_id: str, key: str) -> bool:
        """Raises SubscriptionLimit past the per-connection bound."""
        return self.registry.subscribe_messages(conn_id, key)

    def unsubscribe_messages(self, conn_id: str, key: str) -> bool:
        return self.registry.unsubscribe_messages(conn_id, key)

    # -- publishing

    def run_sink(self, session_key: str, *, origin_conn_id: str | None = None) -> RunEventSink:
        """An :data:`appliance.agent.EventSink` for one run in ``session_key``.

        Its events go to ``origin_conn_id`` (the connection that asked; None for channel turns), to the
        session's message subscribers and to cap-less session-list subscribers (the TUI). It also announces what the run stored: ``session.message``
        for the user line (before lifecycle ``start``) and for the reply or failure note (before
        lifecycle ``end``/``error``), and ``sessions.changed`` with ``phase`` start/end/error for
        session-list subscribers.
        """

        def deliver(event: str, payload: dict[str, Any], droppable: bool) -> None:
            for suffix in transcript_suffixes(event, payload):
                self._announce_stored(session_key, payload, suffix)
            self.publish_run_event(
                session_key, event, payload, droppable=droppable, origin_conn_id=origin_conn_id
            )
            phase = lifecycle_phase(event, payload)
            if phase is not None:
                self.publish_sessions_changed(
                    session_key,
                    phase=phase,
                    runId=payload.get("runId"),
                    sessionId=payload.get("sessionId"),
                    agentId=payload.get("agentId"),
                    hasActiveRun=phase == "start",
                )

        return deliver

    def publish_run_event(
        self,
        session_key: str,
        event: str,
        payload: Any,
        *,
        droppable: bool = False,
        origin_conn_id: str | None = None,
    ) -> int:
        """Send one ``chat``/``agent``/``task`` event of a run; returns how many connections got it."""
        targets = run_event_recipients(
            self.registry, session_key, origin_conn_id, legacy_broadcast=self.legacy_broadcast
        )
        return self._send(event, payload, targets, droppable)

    def publish_session_message(
        self,
        session_key: str,
        message: Mapping[str, Any] | TranscriptMessage,
        *,
        agent_id: str | None = None,
        message_id: str | None = None,
        message_seq: int | None = None,
        run_id: str | None = None,
        session_id: str | None = None,
    ) -> int:
        """``session.message`` for a line appended to ``session_key``'s transcript.

        ``message`` is a stored :class:`TranscriptMessage` (id, seq and session id are taken from it) or
        a wire message dict. Returns how many connections got it; nothing is built when nobody listens.
        """
        targets = session_message_recipients(self.registry, session_key)
        if not targets:
            return 0
        if isinstance(message, TranscriptMessage):
            wire = history_entry(message)
            message_id = message_id or (str(message.id) if message.id is not None else None)
            message_seq = message_seq if message_seq is not None else message.seq
            session_id = session_id or message.session_id
        else:
            wire = dict(message)
        payload = session_message_payload(
            session_key,
            wire,
            agent_id=agent_id or _agent_of(session_key),
            message_id=message_id,
            message_seq=message_seq,
            run_id=run_id,
            session_id=session_id,
        )
        return self._send("session.message", payload, targets, False)  # 2026.9.6: not drop-if-slow

    def publish_sessions_changed(
        self, session_key: str, *, reason: str | None = None, phase: str | None = None, **fields: Any
    ) -> int:
        """``sessions.changed`` to ``sessions.subscribe``rs (dropped for slow clients, as OpenClaw does)."""
        targets = sessions_changed_recipients(self.registry)
        if not targets:
            return 0
        payload = sessions_changed_payload(
            session_key, ts=self._state.wall_ms(), reason=reason, phase=phase, **fields
        )
        return self._send("sessions.changed", payload, targets, True)

    # -- internals

    def _send(self, event: str, payload: Any, targets: frozenset[str], droppable: bool) -> int:
        if not targets:
            return 0
        try:
            return self._state.broadcast(event, payload, drop_if_slow=droppable, conn_ids=targets)
        except (TypeError, ValueError) as exc:  # a payload that is not JSON: our bug, never the caller's end
            log.warning("broadcast_failed", broadcast_event=event, error=str(exc))
            return 0

    def _announce_stored(self, session_key: str, payload: Mapping[str, Any], suffix: str) -> None:
        """Publish the line ``<runId>:<suffix>`` the run just stored (read only if anyone listens)."""
        if not session_message_recipients(self.registry, session_key):
            return
        run_id = payload.get("runId")
        db = self._state.db
        if not isinstance(run_id, str) or db is None:
            return
        wanted = f"{run_id}:{suffix}"
        try:
            from appliance.store import get_session, tail_messages

            session_id = payload.get("sessionId")
            if not isinstance(session_id, str):
                rec = get_session(db, session_key)
                if rec is None:
                    return
                session_id = rec.session_id
            tail = tail_messages(db, session_key, session_id, _TAIL)
        except Exception as exc:  # store busy or closing: the live view misses a line, the transcript has it
            log.warning("session_message_lookup_failed", session_id=session_key, error=str(exc))
            return
        found = next((m for m in reversed(tail) if m.idempotency_key == wanted), None)
        if found is not None:
            self.publish_session_message(
                session_key, found, agent_id=_str_or_none(payload.get("agentId")), run_id=run_id
            )


def _agent_of(session_key: str) -> str | None:
    parts = session_key.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "agent" else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
