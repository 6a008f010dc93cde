"""Who receives which session event: the subscription registry and the recipient rules (sans-IO).

No sockets, no clocks, no store: :class:`~appliance.gateway.fanout.SessionFanout` feeds this module conn
ids, keys and payloads and acts on the recipient sets it returns. Rules, from OpenClaw 2026.9.6
(``dist/sessions-subscriptions-*.mjs`` = ``src/gateway/server-methods/sessions-subscriptions.ts``,
``src/gateway/server-chat-state.ts`` ``createSessionMessageSubscriberRegistry``,
``src/gateway/server-session-events.ts``, ``emitSessionsChanged`` in ``src/gateway/server-methods/``,
and ``createGatewayBroadcaster`` in ``dist/server-start-*.mjs``):

- ``sessions.subscribe`` puts a connection in the *session-event* set: it receives ``sessions.changed``
  (mutations, run lifecycle phases, transcript appends);
- ``sessions.messages.subscribe {key}`` puts it in that key's *message* set: it receives
  ``session.message`` for the key and the ``chat``/``agent``/``task`` events of runs in that session
  (OpenClaw's ``SESSION_SUBSCRIPTION_EVENTS`` routed by ``sessionKeys``);
- ``session.message`` goes to the key's message subscribers and to the session-event subscribers
  (``server-session-events.ts`` builds its recipients from both sets);
- a run's events go to the connection that started it, to the message subscribers of its session, and
  to the ``sessions.subscribe``rs that did not declare the ``session-scoped-events`` cap. OpenClaw
  sends them to *every* operator without that cap (``createGatewayBroadcaster``: only cap holders are
  filtered by subscription); the 2026.9.6 TUI is such a client, calls ``sessions.subscribe`` and
  renders other clients' replies only from these events. Sending every streamed token to every
  cap-less connection (each ``gateway call`` of the CLI is one) costs O(clients) per token for
  clients that asked for nothing, so that full rule is the opt-in ``legacy_broadcast``;
- a connection that goes away leaves every set (:meth:`SubscriptionRegistry.drop`, as OpenClaw's
  ``unsubscribeAllSessionEvents`` on close); empty sets are removed, so the registry's size is
  bounded by the live connections times ``max_keys_per_conn``.

Scope guards are not decided here: each connection's sink applies ``EVENT_SCOPE_GUARDS`` (``chat``,
``agent``, ``session.*`` and ``sessions.changed`` need ``operator.read``) when the event reaches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from appliance.errors import InvalidRequest
from appliance.models.sessions import TranscriptMessage, message_to_wire

__all__ = [
    "SESSION_SCOPED_EVENTS_CAP",
    "SubscriptionLimit",
    "SubscriptionRegistry",
    "history_entry",
    "lifecycle_phase",
    "run_event_recipients",
    "session_message_payload",
    "session_message_recipients",
    "sessions_changed_payload",
    "sessions_changed_recipients",
    "transcript_suffixes",
]

#: ``GATEWAY_CLIENT_CAPS.SESSION_SCOPED_EVENTS``: the client wants run events only for subscribed sessions
SESSION_SCOPED_EVENTS_CAP = "session-scoped-events"
DEFAULT_MAX_KEYS_PER_CONN = 256


class SubscriptionLimit(InvalidRequest):
    """A connection asked for more session subscriptions than ``max_keys_per_conn`` allows."""


@attrs.define
class SubscriptionRegistry:
    """Connection id -> subscriptions, and the reverse maps the recipient rules read.

    Mutable on purpose (one per gateway, changed by requests and disconnects); every method is O(keys
    of one connection) at most. Keys are taken as given: the caller canonicalises them.
    """

    max_keys_per_conn: int = DEFAULT_MAX_KEYS_PER_CONN
    _session_events: set[str] = attrs.field(factory=set, init=False)
    _by_key: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    _by_conn: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    #: open connections that did not declare :data:`SESSION_SCOPED_EVENTS_CAP`
    _legacy: set[str] = attrs.field(factory=set, init=False)

    # -- connections

    def connect(self, conn_id: str, caps: Iterable[str] = ()) -> None:
        """Note an authenticated connection and whether it declared :data:`SESSION_SCOPED_EVENTS_CAP`."""
        if SESSION_SCOPED_EVENTS_CAP in caps:
            self._legacy.discard(conn_id)
        else:
            self._legacy.add(conn_id)

    def drop(self, conn_id: str) -> int:
        """Forget ``conn_id`` everywhere; returns how many subscriptions it had."""
        self._legacy.discard(conn_id)
        count = 1 if conn_id in self._session_events else 0
        self._session_events.discard(conn_id)
        for key in self._by_conn.pop(conn_id, ()):
            count += 1
            self._remove_reverse(key, conn_id)
        return count

    # -- sessions.subscribe

    def subscribe_sessions(self, conn_id: str) -> bool:
        """Returns False when it was already subscribed."""
        if conn_id in self._session_events:
            return False
        self._session_events.add(conn_id)
        return True

    def unsubscribe_sessions(self, conn_id: str) -> bool:
        if conn_id not in self._session_events:
            return False
        self._session_events.discard(conn_id)
        return True

    # -- sessions.messages.subscribe

    def subscribe_messages(self, conn_id: str, key: str) -> bool:
        """Returns False when it was already subscribed. Raises SubscriptionLimit past the bound."""
        keys = self._by_conn.get(conn_id)
        if keys is not None and key in keys:
            return False
        if keys is not None and len(keys) >= self.max_keys_per_conn:
            raise SubscriptionLimit(
                f"too many session subscriptions on this connection (max {self.max_keys_per_conn})",
                details={"limit": self.max_keys_per_conn},
            )
        self._by_conn.setdefault(conn_id, set()).add(key)
        self._by_key.setdefault(key, set()).add(conn_id)
        return True

    def unsubscribe_messages(self, conn_id: str, key: str) -> bool:
        keys = self._by_conn.get(conn_id)
        if keys is None or key not in keys:
            return False
        keys.discard(key)
        if not keys:
            del self._by_conn[conn_id]
        self._remove_reverse(key, conn_id)
        return True

    def _remove_reverse(self, key: str, conn_id: str) -> None:
        conns = self._by_key.get(key)
        if conns is not None:
            conns.discard(conn_id)
            if not conns:
                del self._by_key[key]

    # -- reads

    def message_subscribers(self, key: str) -> frozenset[str]:
        return frozenset(self._by_key.get(key, ()))

    def session_subscribers(self) -> frozenset[str]:
        return frozenset(self._session_events)

    def legacy_connections(self) -> frozenset[str]:
        return frozenset(self._legacy)

    def keys_of(self, conn_id: str) -> frozenset[str]:
        return frozenset(self._by_conn.get(conn_id, ()))

    def has_message_subscribers(self, key: str) -> bool:
        return key in self._by_key

    def has_session_subscribers(self) -> bool:
        return bool(self._session_events)

    def subscription_count(self) -> int:
        return len(self._session_events) + sum(len(keys) for keys in self._by_conn.values())


# -- recipients ------------------------------------------------------------------------------------


def run_event_recipients(
    registry: SubscriptionRegistry,
    session_key: str,
    origin: str | None = None,
    *,
    legacy_broadcast: bool = False,
) -> frozenset[str]:
    """Who gets a ``chat``/``agent``/``task`` event of a run in ``session_key`` (see the module rules)."""
    targets = set(registry._by_key.get(session_key, ()))
    if origin is not None:
        targets.add(origin)
    targets |= registry._legacy if legacy_broadcast else registry._legacy & registry._session_events
    return frozenset(targets)


def session_message_recipients(registry: SubscriptionRegistry, session_key: str) -> frozenset[str]:
    """Who gets ``session.message`` for ``session_key``: its message and the session-event subscribers."""
    return frozenset(registry._by_key.get(session_key, ())) | frozenset(registry._session_events)


def sessions_changed_recipients(registry: SubscriptionRegistry) -> frozenset[str]:
    return frozenset(registry._session_events)


# -- what a run event implies -----------------------------------------------------------------------


def lifecycle_phase(event: str, payload: Mapping[str, Any]) -> str | None:
    """``start``/``end``/``error`` of an ``agent`` lifecycle event (a ``sessions.changed`` phase), or None."""
    if event != "agent" or payload.get("stream") != "lifecycle":
        return None
    data = payload.get("data")
    phase = data.get("phase") if isinstance(data, Mapping) else None
    return phase if phase in ("start", "end", "error") else None


def transcript_suffixes(event: str, payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Which transcript lines a run event says were just stored, as ``<runId>:<suffix>`` idempotency keys.

    The agent loop stores the user message before its lifecycle ``start``, and the reply (lifecycle
    ``end``) or the ``run-failed-before-reply`` note (lifecycle ``error``: failure, timeout, abort) before
    its terminal lifecycle event; each becomes one ``session.message``.
    """
    phase = lifecycle_phase(event, payload)
    if phase == "start":
        return ("user",)
    if phase == "end":
        return ("assistant",)
    if phase == "error":
        return ("failed",)
    return ()


# -- payloads -------------------------------------------------------------------------------------------


def history_entry(msg: TranscriptMessage) -> dict[str, Any]:
    """A transcript line as ``chat.history`` and ``session.message`` show it (custom notes flattened)."""
    wire = message_to_wire(msg)
    content = msg.content
    if msg.role == "custom" and isinstance(content, dict):
        wire["customType"] = content.get("customType", "note")
        wire["content"] = content.get("text", "")
        wire["display"] = True
        if content.get("runId"):
            wire["__openclaw"] = {**wire.get("__openclaw", {}), "runId": content["runId"]}
    return wire


def session_message_payload(
    session_key: str,
    message: Mapping[str, Any],
    *,
    agent_id: str | None = None,
    message_id: str | None = None,
    message_seq: int | None = None,
    run_id: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """``session.message``: ``{sessionKey, agentId?, message, messageId?, messageSeq?, runId?, sessionId?}``
    (OpenClaw ``projectSessionMessagePayload``; its session snapshot is cut down to ``sessionId``)."""
    out: dict[str, Any] = {"sessionKey": session_key}
    if agent_id is not None:
        out["agentId"] = agent_id
    out["message"] = dict(message)
    extra = {"messageId": message_id, "messageSeq": message_seq, "runId": run_id, "sessionId": session_id}
    out.update({name: value for name, value in extra.items() if value is not None})
    return out


def sessions_changed_payload(
    session_key: str,
    *,
    ts: int,
    reason: str | None = None,
    phase: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """``sessions.changed``: ``{sessionKey, reason | phase, ts, …snapshot fields}``, None fields left out
    (mutations carry ``reason``; run lifecycle and transcript appends carry ``phase``)."""
    out: dict[str, Any] = {"sessionKey": session_key}
    if reason is not None:
        out["reason"] = reason
    if phase is not None:
        out["phase"] = phase
    out["ts"] = ts
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out
