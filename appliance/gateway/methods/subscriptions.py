"""``sessions.subscribe``/``sessions.unsubscribe`` and ``sessions.messages.subscribe``/``…unsubscribe``.

Shapes are OpenClaw 2026.9.6's (``dist/sessions-subscriptions-*.mjs``, source
``src/gateway/server-methods/sessions-subscriptions.ts``; params schemas
``SessionsMessagesSubscribeParamsSchema`` = ``{key: NonEmptyString, agentId?, includeApprovals?: true}``):

- ``sessions.subscribe`` takes ``sessions.list`` params. ``{}`` answers ``{subscribed: true}``; anything
  else subscribes, then answers ``{subscribed: true, list: <the sessions.list payload>}`` (subscribing
  first, so a change during the read still arrives as an event). Invalid params subscribe nothing;
- ``sessions.unsubscribe`` answers ``{subscribed: false}``. 2026.9.6 no longer has it (earlier gateways
  did, with this shape), so it works but is not advertised;
- ``sessions.messages.subscribe {key, agentId?}`` answers ``{subscribed: true, key: <canonical key>}``;
  ``sessions.messages.unsubscribe`` answers ``{subscribed: false, key}``. ``includeApprovals: true``
  needs a paired device with ``operator.approvals``; this gateway pairs no devices, so it is refused
  with OpenClaw's message;
- all four need ``operator.read``; subscriptions end with the connection.

The registry and the recipient rules live in :mod:`appliance.gateway.subscriptions` (sans-IO); the
publishing side in :mod:`appliance.gateway.fanout`.
"""

from __future__ import annotations

from typing import Any

from appliance.errors import InvalidRequest
from appliance.gateway.dispatch import MethodContext, MethodTable, Scope
from appliance.models.convert import Params
from appliance.models.session_keys import DEFAULT_AGENT_ID, normalise_agent_id, normalise_session_key

__all__ = ["SUBSCRIPTION_SCOPES", "table"]

table = MethodTable()

SUBSCRIPTION_SCOPES: dict[str, Scope] = {
    "sessions.subscribe": Scope.READ,
    "sessions.unsubscribe": Scope.READ,
    "sessions.messages.subscribe": Scope.READ,
    "sessions.messages.unsubscribe": Scope.READ,
}

APPROVALS_REFUSED = (
    "sessions.messages.subscribe includeApprovals requires a paired device and gateway scope: "
    "operator.approvals"
)


@table.method("sessions.subscribe")
async def sessions_subscribe(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    fanout = ctx.state.fanout
    if not params:
        fanout.subscribe_sessions(ctx.conn_id)
        return {"subscribed": True}
    from appliance.gateway.methods.sessions import sessions_list

    added = fanout.subscribe_sessions(ctx.conn_id)
    try:
        listing = await sessions_list(ctx, params)
    except BaseException:
        if added:
            fanout.unsubscribe_sessions(ctx.conn_id)
        raise
    return {"subscribed": True, "list": listing}


@table.method("sessions.unsubscribe", advertised=False)
async def sessions_unsubscribe(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    Params("sessions.unsubscribe", params, ())
    ctx.state.fanout.unsubscribe_sessions(ctx.conn_id)
    return {"subscribed": False}


def _subscription_key(method: str, params: dict[str, Any], allowed: tuple[str, ...]) -> tuple[Params, str]:
    """Validate and return the canonical session key (``main`` alias, ``agentId`` for bare keys, case)."""
    p = Params(method, params, allowed)
    raw = p.non_empty("key", required=True)
    agent_raw = p.non_empty("agentId")
    if raw is None or not raw.strip():
        raise InvalidRequest("key required")
    agent_id = normalise_agent_id(agent_raw) if agent_raw else DEFAULT_AGENT_ID
    return p, str(normalise_session_key(raw, agent_id=agent_id, field="key"))


@table.method("sessions.messages.subscribe")
async def sessions_messages_subscribe(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p, key = _subscription_key("sessions.messages.subscribe", params, ("key", "agentId", "includeApprovals"))
    if p.has("includeApprovals"):
        if p.raw["includeApprovals"] is not True:
            raise p.fail("includeApprovals", "must be equal to constant")
        raise InvalidRequest(APPROVALS_REFUSED)
    ctx.state.fanout.subscribe_messages(ctx.conn_id, key)
    return {"subscribed": True, "key": key}


@table.method("sessions.messages.unsubscribe")
async def sessions_messages_unsubscribe(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    _, key = _subscription_key("sessions.messages.unsubscribe", params, ("key", "agentId"))
    ctx.state.fanout.unsubscribe_messages(ctx.conn_id, key)
    return {"subscribed": False, "key": key}
