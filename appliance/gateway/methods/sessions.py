"""``sessions.*`` and ``session.status`` methods: list, preview, resolve, patch, reset, delete, compact, history.

Rules:
- every handler validates its params first with :class:`Params`: unknown properties, wrong types and
  out-of-range values answer INVALID_REQUEST ``invalid <method> params: at /<field>: <why>`` with
  ``details.errors``; nothing a peer sends can raise anything but an ApplianceError;
- semantic refusals copy OpenClaw's messages verbatim (``label already in use: X``,
  ``Cannot delete the main session (agent:main:main).``, ``spawnedBy cannot be changed once set``…);
- keys go through :func:`~appliance.models.session_keys.normalise_session_key` (``main`` alias, case);
- a mutation commits before the handler returns, then ``sessions.changed`` goes best-effort to the
  ``sessions.subscribe``rs (``state.fanout``);
- times come from ``ctx.state.wall_ms()``.
"""

from __future__ import annotations

from typing import Any

import attrs

from appliance.errors import InvalidRequest, MissingScope, ValidationFailed
from appliance.gateway.dispatch import MethodContext, MethodTable, Scope
from appliance.log import get_logger
from appliance.models.convert import Params
from appliance.models.session_keys import (
    DEFAULT_AGENT_ID,
    DEFAULT_MAIN_KEY,
    main_session_key,
    normalise_agent_id,
    normalise_session_key,
)
from appliance.models.sessions import (
    LABEL_MAX_LENGTH,
    THINKING_LEVELS,
    SessionRecord,
    WireDefaults,
    apply_session_patch,
    message_text,
    message_to_wire,
    parse_label,
    session_entry_to_wire,
    session_to_wire,
)
from appliance.store import (
    Database,
    SessionFilter,
    StoreConflict,
    compact_transcript,
    count_messages,
    create_session,
    delete_session,
    find_session_by_id,
    find_session_by_label,
    find_sessions_by_id_prefix,
    get_session,
    history,
    list_sessions,
    new_session_id,
    reset_session,
    tail_messages,
    upsert_session,
    usage_totals,
)

__all__ = ["LABEL_MAX_LENGTH", "Params", "default_model", "table"]

log = get_logger("appliance.gateway.sessions")

table = MethodTable()

LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
PREVIEW_KEYS_MAX = 64
COMPACT_MAX_LINES_DEFAULT = 400
HISTORY_LIMIT_DEFAULT = 200
HISTORY_LIMIT_MAX = 1000

# -- shared helpers --------------------------------------------------------------------------------


def default_model(ctx: MethodContext) -> tuple[str | None, str | None]:
    """The configured ``(provider, model)``; ``agent.model`` may be ``provider/model`` or a bare model."""
    raw = (ctx.state.settings.agent.model or "").strip()
    if not raw:
        return None, None
    if "/" in raw:
        provider, _, model = raw.partition("/")
        return provider, model
    return "openai", raw


def _db(ctx: MethodContext) -> Database:
    return ctx.state.db


def _invalid(message: str, **details: Any) -> InvalidRequest:
    return InvalidRequest(message, details=details or None)


def _request_key(p: Params, *, required: bool = True, mutation: bool = False) -> str | None:
    """``key`` or its alias ``sessionKey``, normalised; both given must agree.

    A missing key on a mutation answers OpenClaw's ``session mutation target is unavailable``.
    """
    key = p.string("key")
    alias = p.string("sessionKey")
    if key is not None and alias is not None and key.strip() != alias.strip():
        raise _invalid("key and sessionKey disagree", key=key, sessionKey=alias)
    raw = key if key is not None else alias
    if raw is None or not raw.strip():
        if mutation:
            raise _invalid(
                "session mutation target is unavailable",
                code="SESSION_MUTATION_TARGET_REQUIRED",
                method=p.method,
            )
        if required:
            raise _invalid("key required")
        return None
    return str(normalise_session_key(raw, field="key"))


def _defaults(ctx: MethodContext) -> WireDefaults:
    provider, model = default_model(ctx)
    mode = ctx.state.settings.queue.default_mode
    return WireDefaults(model_provider=provider, model=model, queue_mode=mode, main_key=_main_key())


def _resolved(ctx: MethodContext, rec: SessionRecord) -> dict[str, Any]:
    provider, model = default_model(ctx)
    return {
        "modelProvider": rec.overrides.get("providerOverride") or provider,
        "model": rec.overrides.get("modelOverride") or model,
        "agentRuntime": {"id": "appliance", "source": "implicit"},
        "runtimeSelectionLocked": False,
    }


def _main_key() -> str:
    return main_session_key(DEFAULT_AGENT_ID, DEFAULT_MAIN_KEY)


def _agent_of(key: str) -> str:
    parts = key.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "agent" else DEFAULT_AGENT_ID


def _broadcast(ctx: MethodContext, key: str, reason: str, rec: SessionRecord | None, **extra: Any) -> None:
    """Best-effort ``sessions.changed`` to ``sessions.subscribe``rs (dropped for slow clients), as OpenClaw's
    ``emitSessionsChanged``; a broadcast failure never fails the call."""
    fields: dict[str, Any] = {"agentId": _agent_of(key), **extra}
    if rec is not None:
        fields.update(
            {
                "sessionId": rec.session_id,
                "updatedAt": rec.updated_at,
                "kind": rec.kind,
                "label": rec.label,
                "totalTokens": rec.tokens.total,
            }
        )
    try:
        ctx.state.fanout.publish_sessions_changed(key, reason=reason, **fields)
    except Exception as exc:
        log.warning("broadcast_failed", broadcast_event="sessions.changed", error=str(exc))


# -- sessions.list ---------------------------------------------------------------------------------

_LIST_PARAMS = (
    "limit",
    "offset",
    "activeMinutes",
    "includeGlobal",
    "includeUnknown",
    "includeArchived",
    "includeDerivedTitles",
    "includeLastMessage",
    "label",
    "spawnedBy",
    "agentId",
    "search",
)


def _derived_title(db: Database, rec: SessionRecord) -> str | None:
    for msg in history(db, rec.key, rec.session_id, limit=50):
        if msg.role == "user":
            text = " ".join(message_text(msg.content).split())
            if text:
                return text if len(text) <= 60 else text[:59] + "…"
    return None


def _last_message(db: Database, rec: SessionRecord) -> str | None:
    tail = tail_messages(db, rec.key, rec.session_id, 1)
    if not tail:
        return None
    text = " ".join(message_text(tail[0].content).split())
    return text if len(text) <= 240 else text[:239] + "…"


@table.method("sessions.list")
async def sessions_list(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("sessions.list", params, _LIST_PARAMS)
    limit = p.integer("limit", default=LIST_LIMIT_DEFAULT, minimum=1) or LIST_LIMIT_DEFAULT
    limit = min(limit, LIST_LIMIT_MAX)
    offset = p.integer("offset", default=0, minimum=0) or 0
    active_minutes = p.integer("activeMinutes", minimum=1)
    agent_id = p.non_empty("agentId")
    label = p.string("label", min_length=1, max_length=LABEL_MAX_LENGTH)
    spawned_by = p.non_empty("spawnedBy")
    search = p.string("search")
    include_titles = p.boolean("includeDerivedTitles")
    include_last = p.boolean("includeLastMessage")
    now = ctx.state.wall_ms()
    flt = SessionFilter(
        agent_id=agent_id.strip().lower() if agent_id else None,
        search=search.strip() or None if search is not None else None,
        label=label.strip() or None if label is not None else None,
        spawned_by=str(normalise_session_key(spawned_by, field="spawnedBy")) if spawned_by else None,
        include_global=p.boolean("includeGlobal"),
        include_unknown=p.boolean("includeUnknown"),
        include_archived=p.boolean("includeArchived"),
        active_since_ms=now - active_minutes * 60_000 if active_minutes else None,
        limit=limit,
        offset=offset,
    )
    db = _db(ctx)
    defaults = _defaults(ctx)
    records, total = list_sessions(db, flt)
    rows: list[dict[str, Any]] = []
    for rec in records:
        extra: dict[str, Any] = {}
        if include_titles:
            extra["derivedTitle"] = _derived_title(db, rec)
        if include_last:
            extra["lastMessagePreview"] = _last_message(db, rec)
        rows.append(session_to_wire(rec, extra=extra, now_ms=now, defaults=defaults))
    has_more = offset + len(rows) < total
    out: dict[str, Any] = {
        "ts": now,
        "path": str(db.path),
        "count": len(rows),
        "totalCount": total,
        "limitApplied": limit,
    }
    if p.has("offset"):
        out["offset"] = offset
    out.update(
        {
            "nextOffset": offset + len(rows) if has_more else None,
            "hasMore": has_more,
            "owners": [],
            "defaults": {
                "modelProvider": defaults.model_provider,
                "model": defaults.model,
                "contextTokens": None,
                "agentRuntime": {"id": "appliance", "source": "implicit"},
                "thinkingLevels": [{"id": level, "label": level} for level in THINKING_LEVELS[:5]],
                "thinkingOptions": list(THINKING_LEVELS[:5]),
                "thinkingDefault": defaults.thinking_default,
                "modelSelectionTarget": "session",
            },
            "sessions": rows,
        }
    )
    return out


# -- sessions.preview ------------------------------------------------------------------------------


@table.method("sessions.preview")
async def sessions_preview(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("sessions.preview", params, ("keys", "limit", "maxChars"))
    keys = [k.strip() for k in p.string_list("keys", required=True, min_items=1) if k.strip()][
        :PREVIEW_KEYS_MAX
    ]
    limit = p.integer("limit", default=12, minimum=1, maximum=1000) or 12
    max_chars = p.integer("maxChars", default=240, minimum=20, maximum=100_000) or 240
    db = _db(ctx)
    previews: list[dict[str, Any]] = []
    for raw in keys:
        try:
            key = str(normalise_session_key(raw))
        except ValidationFailed:
            previews.append({"key": raw, "status": "error", "items": []})
            continue
        rec = get_session(db, key)
        if rec is None:
            previews.append({"key": raw, "status": "missing", "items": []})
            continue
        items = []
        for msg in tail_messages(db, key, rec.session_id, limit):
            text = message_text(msg.content)
            if len(text) > max_chars:
                text = text[: max_chars - 1] + "…"
            items.append({"role": msg.role, "text": text})
        previews.append({"key": raw, "status": "ok" if items else "empty", "items": items})
    return {"ts": ctx.state.wall_ms(), "previews": previews}


# -- sessions.resolve ------------------------------------------------------------------------------


_RESOLVE_PARAMS = (
    "key",
    "sessionId",
    "label",
    "shortId",
    "reference",
    "agentId",
    "spawnedBy",
    "includeGlobal",
    "includeUnknown",
)


def _resolve_label(db: Database, p: Params, label_raw: str) -> SessionRecord:
    label = parse_label(label_raw)
    agent_id = p.non_empty("agentId")
    spawned_by = p.non_empty("spawnedBy")
    flt = SessionFilter(
        label=label,
        agent_id=agent_id.strip().lower() if agent_id else None,
        spawned_by=str(normalise_session_key(spawned_by, field="spawnedBy")) if spawned_by else None,
        include_global=p.boolean("includeGlobal"),
        include_unknown=p.boolean("includeUnknown"),
        include_archived=True,
        limit=2,
    )
    records, _ = list_sessions(db, flt)
    if not records:
        raise _invalid(f"No session found with label: {label}")
    if len(records) > 1:
        raise _invalid(f"Multiple sessions found with label: {label} ({', '.join(r.key for r in records)})")
    return records[0]


def _resolve_session_id(db: Database, session_id: str) -> SessionRecord | None:
    rec = find_session_by_id(db, session_id)
    if rec is None:
        try:
            rec = get_session(db, str(normalise_session_key(session_id)))
        except ValidationFailed:
            rec = None
    return rec


def _resolve_short_id(db: Database, short_id: str) -> SessionRecord:
    matches = find_sessions_by_id_prefix(db, short_id.lower(), limit=2)
    if not matches:
        raise _invalid(f"No session found: {short_id}")
    if len(matches) > 1:
        raise _invalid(
            f"Multiple sessions found for shortId: {short_id} ({', '.join(r.key for r in matches)})"
        )
    return matches[0]


@table.method("sessions.resolve")
async def sessions_resolve(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Find one session by key, sessionId, label, sessionId prefix (``shortId``) or any of them (``reference``)."""
    p = Params("sessions.resolve", params, _RESOLVE_PARAMS)
    key = (p.non_empty("key") or "").strip()
    session_id = (p.non_empty("sessionId") or "").strip()
    label_raw = p.string("label", min_length=1, max_length=LABEL_MAX_LENGTH)
    short_id = (p.non_empty("shortId") or "").strip()
    reference = (p.non_empty("reference") or "").strip()
    p.non_empty("agentId")
    p.non_empty("spawnedBy")
    p.boolean("includeGlobal")
    p.boolean("includeUnknown")
    has_label = label_raw is not None and bool(label_raw.strip())
    chosen = sum((bool(key), bool(session_id), has_label, bool(short_id), bool(reference)))
    if chosen > 1:
        raise _invalid("Provide either key, sessionId, label, shortId, or reference (not multiple)")
    if chosen == 0:
        raise _invalid("Either key, sessionId, label, shortId, or reference is required")
    db = _db(ctx)
    rec: SessionRecord | None
    if key:
        rec = get_session(db, str(normalise_session_key(key)))
        if rec is None:
            raise _invalid(f"No session found: {key}")
    elif session_id:
        rec = _resolve_session_id(db, session_id)
        if rec is None:
            raise _invalid(f"No session found: {session_id}")
    elif short_id:
        rec = _resolve_short_id(db, short_id)
    elif reference:
        rec = _resolve_session_id(db, reference) or find_session_by_label(db, reference)
        if rec is None:
            raise _invalid(f"No session found: {reference}")
    else:
        assert label_raw is not None
        rec = _resolve_label(db, p, label_raw)
    return {"ok": True, "key": rec.key, "agentId": rec.agent_id}


# -- sessions.patch --------------------------------------------------------------------------------

_PATCH_PARAMS = (
    "key",
    "sessionKey",
    "label",
    "thinkingLevel",
    "verboseLevel",
    "reasoningLevel",
    "responseUsage",
    "elevatedLevel",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "model",
    "spawnedBy",
    "spawnDepth",
    "sendPolicy",
    "groupActivation",
    "fastMode",
)


_NULLABLE_STRINGS = (
    "thinkingLevel",
    "verboseLevel",
    "reasoningLevel",
    "elevatedLevel",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "model",
    "spawnedBy",
    "groupActivation",
)


def _check_types(p: Params) -> None:
    """The schema pass (OpenClaw's AJV messages): types, label length, literal unions, nullables."""
    for name in _NULLABLE_STRINGS:
        p.string(name, nullable=True)
    p.string("label", nullable=True, min_length=1, max_length=LABEL_MAX_LENGTH)
    p.choice("sendPolicy", ("allow", "deny"), nullable=True)
    p.choice("responseUsage", ("off", "tokens", "full", "on"), nullable=True)
    p.integer("spawnDepth", nullable=True)
    p.optional_boolean("fastMode")


#: patch fields that change what the agent may do or send: ``operator.admin`` only (the CLI asks for it)
_ADMIN_FIELDS = (
    "sendPolicy",
    "responseUsage",
    "verboseLevel",
    "elevatedLevel",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "groupActivation",
    "spawnedBy",
    "spawnDepth",
)


def _require_admin_fields(ctx: MethodContext, p: Params) -> None:
    if not ctx.is_admin() and any(p.has(name) for name in _ADMIN_FIELDS):
        raise MissingScope(str(Scope.ADMIN), [str(Scope.ADMIN)])


@table.method("sessions.patch", scope=Scope.WRITE)
async def sessions_patch(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Create or change one session's label and overrides; commits before answering."""
    p = Params("sessions.patch", params, _PATCH_PARAMS)
    _check_types(p)
    _require_admin_fields(ctx, p)
    key = _request_key(p, mutation=True)
    assert key is not None
    db = _db(ctx)
    now = ctx.state.wall_ms()
    try:
        with db.transaction():
            existing = get_session(db, key)
            if existing is not None:
                base = attrs.evolve(existing, updated_at=max(existing.updated_at, now))
            else:
                base = SessionRecord(
                    key=key,
                    session_id=new_session_id(),
                    lifecycle_revision=new_session_id(),
                    agent_id=_agent_of(key),
                    created_at=now,
                    updated_at=now,
                    session_started_at=now,
                )
            updated = apply_session_patch(p.raw, key, existing, base)
            if updated.label is not None and (existing is None or existing.label != updated.label):
                holder = find_session_by_label(db, updated.label)
                if holder is not None and holder.key != key:
                    raise _invalid(f"label already in use: {updated.label}", key=holder.key)
            upsert_session(db, updated)
    except StoreConflict as exc:
        # a concurrent writer took the label between our check and the write
        raise _invalid(f"label already in use: {str(p.raw.get('label', '')).strip()}") from exc
    _broadcast(ctx, key, "patch", updated)
    return {
        "ok": True,
        "path": str(db.path),
        "key": key,
        "entry": session_entry_to_wire(updated, defaults=_defaults(ctx)),
        "resolved": _resolved(ctx, updated),
    }


# -- sessions.create / describe ---------------------------------------------------------------------


@table.method("sessions.create", scope=Scope.WRITE)
async def sessions_create(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Create a session (``agent:<agentId>:dashboard:<uuid>`` unless a key is given); patch rules apply.

    Starting a run with an initial message belongs to ``chat.send``; this method only creates.
    """
    p = Params("sessions.create", params, ("key", "agentId", "label", "model", "parentSessionKey"))
    raw_key = p.non_empty("key")
    agent_raw = p.non_empty("agentId")
    p.string("label", min_length=1, max_length=LABEL_MAX_LENGTH)
    p.string("model")
    parent_raw = p.non_empty("parentSessionKey")
    agent_id = normalise_agent_id(agent_raw) if agent_raw else None
    if raw_key and raw_key.strip():
        key = str(normalise_session_key(raw_key, agent_id=agent_id or DEFAULT_AGENT_ID))
        key_agent = _agent_of(key)
        if agent_id and key_agent != agent_id:
            raise _invalid(f"sessions.create key agent ({key_agent}) does not match agentId ({agent_id})")
    else:
        key = f"agent:{agent_id or DEFAULT_AGENT_ID}:dashboard:{new_session_id()}"
    db = _db(ctx)
    if parent_raw:
        parent_key = str(normalise_session_key(parent_raw, field="parentSessionKey"))
        if get_session(db, parent_key) is None:
            raise _invalid(f"unknown parent session: {parent_raw}")
    patch = {"key": key, **{k: v for k, v in p.raw.items() if k in ("label", "model")}}
    out = await sessions_patch(ctx, patch)
    return {
        "ok": True,
        "key": key,
        "sessionId": out["entry"]["sessionId"],
        "entry": out["entry"],
        "runStarted": False,
        "resolved": {"modelProvider": out["resolved"]["modelProvider"], "model": out["resolved"]["model"]},
    }


@table.method("sessions.describe")
async def sessions_describe(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """One session's list row, or ``{"session": null}`` when the key has none."""
    p = Params("sessions.describe", params, ("key", "sessionKey"))
    key = _request_key(p)
    assert key is not None
    rec = get_session(_db(ctx), key)
    if rec is None:
        return {"session": None}
    return {"session": session_to_wire(rec, now_ms=ctx.state.wall_ms(), defaults=_defaults(ctx))}


# -- sessions.reset / delete / compact -------------------------------------------------------------


@table.method("sessions.reset", scope=Scope.WRITE)
async def sessions_reset(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Start a new conversation on a session: new sessionId and lifecycleRevision, counters zeroed."""
    p = Params("sessions.reset", params, ("key", "sessionKey", "reason"))
    key = _request_key(p, mutation=True)
    assert key is not None
    reason = p.choice("reason", ("new", "reset"), default="reset")
    db = _db(ctx)
    now = ctx.state.wall_ms()
    with db.transaction():
        rec = reset_session(db, key, now_ms=now)
        if rec is None:
            rec = create_session(db, key=key, agent_id=_agent_of(key), now_ms=now)
    _broadcast(ctx, key, reason or "reset", rec)
    resolved = _resolved(ctx, rec)
    return {
        "ok": True,
        "key": key,
        "entry": session_entry_to_wire(rec, defaults=_defaults(ctx)),
        "resolved": {"modelProvider": resolved["modelProvider"], "model": resolved["model"]},
    }


@table.method("sessions.delete", scope=Scope.WRITE)
async def sessions_delete(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Remove a session (never the main one); its transcript too unless ``deleteTranscript`` is false."""
    p = Params("sessions.delete", params, ("key", "sessionKey", "deleteTranscript", "emitLifecycleHooks"))
    key = _request_key(p, mutation=True)
    assert key is not None
    delete_transcript = p.boolean("deleteTranscript", default=True)
    p.boolean("emitLifecycleHooks", default=True)
    main_key = _main_key()
    if key == main_key:
        raise _invalid(f"Cannot delete the main session ({main_key}).")
    removed = delete_session(_db(ctx), key, delete_transcript=delete_transcript)
    if removed is not None:
        _broadcast(ctx, key, "delete", None, sessionId=removed.session_id)
    return {"ok": True, "key": key, "deleted": removed is not None, "archived": []}


@table.method("sessions.compact", scope=Scope.WRITE)
async def sessions_compact(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Keep the newest ``maxLines`` transcript lines (default 400) and zero the context counters."""
    p = Params("sessions.compact", params, ("key", "sessionKey", "maxLines"))
    key = _request_key(p, mutation=True)
    assert key is not None
    max_lines = p.integer("maxLines", default=COMPACT_MAX_LINES_DEFAULT, minimum=1)
    assert max_lines is not None
    db = _db(ctx)
    rec = get_session(db, key)
    if rec is None:
        return {"ok": True, "key": key, "compacted": False, "reason": "no sessionId"}
    lines = count_messages(db, key, rec.session_id)
    if lines == 0:
        return {"ok": True, "key": key, "compacted": False, "reason": "no transcript"}
    if lines <= max_lines:
        return {"ok": True, "key": key, "compacted": False, "kept": lines}
    now = ctx.state.wall_ms()
    with db.transaction():
        kept, _removed = compact_transcript(db, key, rec.session_id, max_lines)
        current = get_session(db, key) or rec
        updated = attrs.evolve(
            current,
            tokens=attrs.evolve(current.tokens, input=0, output=0, total=0),
            updated_at=max(current.updated_at, now),
            compaction_count=current.compaction_count + 1,
        )
        upsert_session(db, updated)
    _broadcast(ctx, key, "compact", updated, compacted=True)
    return {"ok": True, "key": key, "compacted": True, "kept": kept}


# -- history and status ----------------------------------------------------------------------------


def _session_or_fail(db: Database, key: str) -> SessionRecord:
    rec = get_session(db, key)
    if rec is None:
        raise _invalid(f"session not found: {key}")
    return rec


@table.method("sessions.history")
async def sessions_history(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("sessions.history", params, ("key", "sessionKey", "limit", "cursor", "beforeSeq"))
    key = _request_key(p)
    assert key is not None
    limit = p.integer("limit", default=HISTORY_LIMIT_DEFAULT, minimum=1, maximum=HISTORY_LIMIT_MAX)
    assert limit is not None
    before = p.integer("beforeSeq", minimum=1)
    cursor = p.string("cursor")
    if cursor is not None:
        if not cursor.isdigit() or int(cursor) < 1:
            raise p.fail("cursor", "must be a message sequence number")
        before = int(cursor)
    db = _db(ctx)
    rec = get_session(db, key)
    if rec is None:
        return {"key": key, "sessionKey": key, "sessionId": None, "messages": [], "hasMore": False}
    msgs = history(db, key, rec.session_id, limit=limit + 1, before_seq=before)
    has_more = len(msgs) > limit
    msgs = msgs[-limit:] if has_more else msgs
    out: dict[str, Any] = {
        "key": key,
        "sessionKey": key,
        "sessionId": rec.session_id,
        "messages": [message_to_wire(m) for m in msgs],
        "hasMore": has_more,
        "totalMessages": count_messages(db, key, rec.session_id),
    }
    if has_more and msgs:
        out["nextCursor"] = str(msgs[0].seq)
    return out


@table.method("sessions.get")
async def sessions_get(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("sessions.get", params, ("key", "sessionKey", "limit"))
    key = _request_key(p)
    assert key is not None
    limit = p.integer("limit", default=HISTORY_LIMIT_DEFAULT, minimum=1, maximum=HISTORY_LIMIT_MAX)
    assert limit is not None
    db = _db(ctx)
    rec = get_session(db, key)
    if rec is None:
        return {"messages": []}
    return {"messages": [message_to_wire(m) for m in history(db, key, rec.session_id, limit=limit)]}


@table.method("session.status")
async def session_status(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = Params("session.status", params, ("key", "sessionKey"))
    key = _request_key(p, required=False) or _main_key()
    db = _db(ctx)
    rec = _session_or_fail(db, key)
    totals = usage_totals(db, session_key=key)
    provider, model = default_model(ctx)
    return {
        "ok": True,
        "key": key,
        "sessionId": rec.session_id,
        "status": "idle",
        "entry": session_to_wire(rec, now_ms=ctx.state.wall_ms(), defaults=_defaults(ctx)),
        "messageCount": count_messages(db, key, rec.session_id),
        "usage": {
            "input": rec.tokens.input,
            "output": rec.tokens.output,
            "cacheRead": rec.tokens.cache_read,
            "cacheWrite": rec.tokens.cache_write,
            "totalTokens": rec.tokens.total,
            "totalCost": round(rec.tokens.cost_usd, 6),
            "lifetimeTotalTokens": totals.total,
            "lifetimeTotalCost": round(totals.total_cost, 6),
        },
        "resolved": {
            "modelProvider": rec.overrides.get("providerOverride") or provider,
            "model": rec.overrides.get("modelOverride") or model,
        },
    }
