"""Sessions, transcript messages and usage rows, and their OpenClaw wire shapes (sans-IO).

Rules:
- models are frozen attrs classes; the store builds them from rows, the gateway turns them into wire
  dicts with the ``*_to_wire`` functions here (the one place that knows camelCase names);
- wire dicts omit ``None`` values, as OpenClaw's JSON omits ``undefined`` fields;
- per-session overrides (``thinkingLevel``, ``execHost``, ``providerOverride``…) live in one JSON object
  whose keys are already the wire names, so a new override needs no migration;
- no clocks here: times are epoch milliseconds passed in;
- :func:`apply_session_patch` holds ``sessions.patch``'s rules (OpenClaw's messages, verbatim), so they
  are tested without a gateway or a database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from appliance.errors import InvalidRequest, ValidationFailed
from appliance.models.convert import MAX_SAFE_INTEGER
from appliance.models.session_keys import SessionKeyKind, is_subagent_key, parse_session_key

__all__ = [
    "LABEL_MAX_LENGTH",
    "OVERRIDE_FIELDS",
    "THINKING_LEVELS",
    "SessionRecord",
    "TokenCounters",
    "TranscriptMessage",
    "UsageDay",
    "UsageRecord",
    "UsageTotals",
    "WireDefaults",
    "apply_session_patch",
    "message_text",
    "message_to_wire",
    "parse_label",
    "session_entry_to_wire",
    "session_to_wire",
    "usage_day_to_wire",
    "usage_totals_to_wire",
]

#: overrides a ``sessions.patch`` may set, stored under their wire names
OVERRIDE_FIELDS: tuple[str, ...] = (
    "thinkingLevel",
    "verboseLevel",
    "reasoningLevel",
    "responseUsage",
    "elevatedLevel",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "providerOverride",
    "modelOverride",
    "sendPolicy",
    "groupActivation",
    "fastMode",
)


@attrs.frozen
class TokenCounters:
    """Cumulative token use of one session since its last reset."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    total: int = 0
    cost_usd: float = 0.0


@attrs.frozen
class SessionRecord:
    """One row of the ``sessions`` table."""

    key: str
    session_id: str
    agent_id: str
    created_at: int
    updated_at: int
    session_started_at: int
    label: str | None = None
    spawned_by: str | None = None
    spawn_depth: int | None = None
    overrides: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    last_interaction_at: int | None = None
    #: rotated (a fresh UUID) on every reset, as OpenClaw does
    lifecycle_revision: str = ""
    tokens: TokenCounters = TokenCounters()
    context_tokens: int | None = None
    archived: bool = False
    pinned: bool = False
    model_provider: str | None = None
    model: str | None = None
    last_run_id: str | None = None
    last_run_error: str | None = None
    compaction_count: int = 0

    @property
    def kind(self) -> str:
        """OpenClaw's row ``kind``: ``global``, ``group``, ``direct`` or ``unknown``."""
        if self.key in ("global", "unknown"):
            return self.key
        try:
            parsed = parse_session_key(self.key)
        except ValidationFailed:
            return "unknown"
        if parsed.kind in (SessionKeyKind.GROUP, SessionKeyKind.CHANNEL):
            return "group"
        if parsed.kind is SessionKeyKind.GLOBAL:
            return "global"
        return "direct"

    @property
    def chat_type(self) -> str:
        try:
            parsed = parse_session_key(self.key)
        except ValidationFailed:
            return "direct"
        if parsed.kind is SessionKeyKind.GROUP:
            return "group"
        if parsed.kind is SessionKeyKind.CHANNEL:
            return "channel"
        return "direct"


@attrs.frozen
class TranscriptMessage:
    """One line of a session transcript. ``content`` is JSON: a string or a list of parts."""

    session_key: str
    session_id: str
    seq: int
    role: str
    content: Any = attrs.field(hash=False)
    ts: int
    id: int | None = None
    idempotency_key: str | None = None
    usage: Mapping[str, Any] | None = attrs.field(default=None, hash=False)


@attrs.frozen
class UsageRecord:
    """One model call's token use and cost, attributed to a session and a UTC day."""

    agent_id: str
    ts: int
    day: str
    provider: str
    model: str
    session_key: str | None = None
    session_id: str | None = None
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    total: int = 0
    input_cost: float = 0.0
    output_cost: float = 0.0
    cache_read_cost: float = 0.0
    cache_write_cost: float = 0.0
    total_cost: float = 0.0


@attrs.frozen
class UsageTotals:
    """Sums over a set of :class:`UsageRecord` rows."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    total: int = 0
    input_cost: float = 0.0
    output_cost: float = 0.0
    cache_read_cost: float = 0.0
    cache_write_cost: float = 0.0
    total_cost: float = 0.0
    calls: int = 0


@attrs.frozen
class UsageDay:
    date: str
    totals: UsageTotals


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@attrs.frozen
class WireDefaults:
    """Gateway-wide facts a session row reports next to its own fields (effective values)."""

    model_provider: str | None = None
    model: str | None = None
    queue_mode: str = "steer"
    main_key: str = "agent:main:main"
    thinking_default: str = "off"


def _classification(rec: SessionRecord, main_key: str) -> str:
    if rec.key == main_key:
        return "main"
    try:
        kind = parse_session_key(rec.key).kind
    except ValidationFailed:
        return "custom"
    return {
        SessionKeyKind.GROUP: "group",
        SessionKeyKind.CHANNEL: "group",
        SessionKeyKind.DIRECT: "direct",
        SessionKeyKind.SUBAGENT: "subagent",
        SessionKeyKind.CRON: "cron",
        SessionKeyKind.GLOBAL: "global",
    }.get(kind, "custom")


def _token_fields(rec: SessionRecord) -> dict[str, Any]:
    return {
        "inputTokens": rec.tokens.input,
        "outputTokens": rec.tokens.output,
        "cacheRead": rec.tokens.cache_read or None,
        "cacheWrite": rec.tokens.cache_write or None,
        "totalTokens": rec.tokens.total,
        "totalTokensFresh": True,
        "estimatedCostUsd": rec.tokens.cost_usd or None,
    }


def session_to_wire(
    rec: SessionRecord,
    *,
    extra: Mapping[str, Any] | None = None,
    now_ms: int | None = None,
    defaults: WireDefaults | None = None,
) -> dict[str, Any]:
    """The camelCase row of ``sessions.list`` (OpenClaw's gateway row, fields we can back with data)."""
    d = defaults or WireDefaults()
    ov = rec.overrides
    fast = ov.get("fastMode")
    row: dict[str, Any] = {
        "key": rec.key,
        "visibility": "shared",
        "createdVia": "operator",
        "createdAt": rec.created_at,
        "kind": rec.kind,
        "label": rec.label,
        "classification": _classification(rec, d.main_key),
        "agentId": rec.agent_id,
        "isMain": rec.key == d.main_key,
        "isBackground": False,
        "displayName": rec.label,
        "chatType": rec.chat_type,
        "updatedAt": rec.updated_at,
        "archived": rec.archived,
        "pinned": rec.pinned,
        "unread": False,
        "lastInteractionAt": rec.last_interaction_at,
        "sessionId": rec.session_id,
        "sessionStartedAt": rec.session_started_at,
        "spawnedBy": rec.spawned_by,
        "spawnDepth": rec.spawn_depth,
        "thinkingLevels": [{"id": level, "label": level} for level in THINKING_LEVELS[:5]],
        "thinkingOptions": list(THINKING_LEVELS[:5]),
        "thinkingDefault": d.thinking_default,
    }
    for name in OVERRIDE_FIELDS:
        if name in ov:
            row[name] = ov[name]
    row.update(
        {
            "effectiveFastMode": bool(fast),
            "effectiveFastModeSource": "session" if fast is not None else "default",
            "totalTokensFresh": False,
        }
    )
    if rec.tokens.total or rec.tokens.input or rec.tokens.output:
        row.update(_token_fields(rec))
    if rec.last_run_id is not None:
        row.update(
            {
                "status": "failed" if rec.last_run_error else "done",
                "lastRunId": rec.last_run_id,
                "lastRunError": rec.last_run_error,
            }
        )
    row.update(
        {
            "effectiveResponseUsage": ov.get("responseUsage", "off"),
            "effectiveQueueMode": d.queue_mode,
            "modelProvider": ov.get("providerOverride") or rec.model_provider or d.model_provider,
            "model": ov.get("modelOverride") or rec.model or d.model,
            "modelOverrideSource": "user" if "modelOverride" in ov else None,
            "runtimeSelectionLocked": False,
            "contextTokens": rec.context_tokens,
            "compactionCount": rec.compaction_count or None,
            "snapshotAt": now_ms,
            "hasActiveRun": False,
            "activeRunIds": [],
            "sharingRole": "owner",
        }
    )
    if extra:
        row.update(extra)
    return _drop_none(row)


def session_entry_to_wire(rec: SessionRecord, *, defaults: WireDefaults | None = None) -> dict[str, Any]:
    """The stored entry as ``sessions.patch``/``sessions.reset`` return it (``entry``)."""
    d = defaults or WireDefaults()
    ov = rec.overrides
    entry: dict[str, Any] = {
        "sessionId": rec.session_id,
        "lifecycleRevision": rec.lifecycle_revision or None,
        "updatedAt": rec.updated_at,
        "sessionStartedAt": rec.session_started_at,
        "lastInteractionAt": rec.last_interaction_at,
        "compactionCount": rec.compaction_count,
        "createdVia": "operator",
        "createdAt": rec.created_at,
        "label": rec.label,
        "displayName": rec.label,
        "spawnedBy": rec.spawned_by,
        "spawnDepth": rec.spawn_depth,
    }
    for name in OVERRIDE_FIELDS:
        if name in ov:
            entry[name] = ov[name]
    if "modelOverride" in ov:
        entry["modelOverrideSource"] = "user"
    entry.update(_token_fields(rec))
    entry["modelProvider"] = ov.get("providerOverride") or rec.model_provider or d.model_provider
    entry["model"] = ov.get("modelOverride") or rec.model or d.model
    return _drop_none(entry)


def message_text(content: Any) -> str:
    """Flatten message content (a string or a list of ``{type:"text", text}`` parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type", "text") == "text"
        ]
        return "\n".join(p for p in parts if p)
    if isinstance(content, Mapping) and "text" in content:
        return str(content["text"])
    return ""


def message_to_wire(msg: TranscriptMessage) -> dict[str, Any]:
    """A ``chat.history`` / ``sessions.history`` message, with OpenClaw's ``__openclaw`` record metadata."""
    meta = _drop_none(
        {
            "id": str(msg.id) if msg.id is not None else None,
            "idempotencyKey": msg.idempotency_key,
            "recordTimestampMs": msg.ts,
            "seq": msg.seq,
        }
    )
    out: dict[str, Any] = {
        "role": msg.role,
        "content": msg.content,
        "timestamp": msg.ts,
        "idempotencyKey": msg.idempotency_key,
        "usage": dict(msg.usage) if msg.usage is not None else None,
        "__openclaw": meta,
    }
    return _drop_none(out)


def usage_totals_to_wire(t: UsageTotals) -> dict[str, Any]:
    return {
        "input": t.input,
        "output": t.output,
        "cacheRead": t.cache_read,
        "cacheWrite": t.cache_write,
        "totalTokens": t.total,
        "totalCost": round(t.total_cost, 6),
        "inputCost": round(t.input_cost, 6),
        "outputCost": round(t.output_cost, 6),
        "cacheReadCost": round(t.cache_read_cost, 6),
        "cacheWriteCost": round(t.cache_write_cost, 6),
        "missingCostEntries": 0,
    }


def usage_day_to_wire(day: UsageDay) -> dict[str, Any]:
    return {"date": day.date, **usage_totals_to_wire(day.totals)}


# -- sessions.patch rules (OpenClaw's applySessionsPatchToStore) -----------------------------------

LABEL_MAX_LENGTH = 64
THINKING_LEVELS = ("off", "minimal", "low", "medium", "high", "xhigh", "adaptive", "max")


def _invalid(message: str, **details: Any) -> InvalidRequest:
    return InvalidRequest(message, details=details or None)


def parse_label(raw: Any) -> str | None:
    """OpenClaw's label rule: trimmed; blank is ``invalid label: empty``; longer than 64 is refused (never cut)."""
    if not isinstance(raw, str):
        raise _invalid("invalid label: must be a string")
    trimmed = raw.strip()
    if not trimmed:
        raise _invalid("invalid label: empty")
    if len(trimmed) > LABEL_MAX_LENGTH:
        raise _invalid(f"invalid label: too long (max {LABEL_MAX_LENGTH})", maxLength=LABEL_MAX_LENGTH)
    return trimmed


def _norm_thinking(raw: str) -> str | None:
    key = raw.strip().lower()
    collapsed = re.sub(r"[\s_-]+", "", key)
    if collapsed in ("adaptive", "auto"):
        return "adaptive"
    if collapsed == "max":
        return "max"
    if collapsed in ("xhigh", "extrahigh"):
        return "xhigh"
    table_ = {
        "off": "off",
        "none": "off",
        "on": "low",
        "enable": "low",
        "enabled": "low",
        "min": "minimal",
        "minimal": "minimal",
        "think": "minimal",
        "low": "low",
        "thinkhard": "low",
        "think-hard": "low",
        "think_hard": "low",
        "mid": "medium",
        "med": "medium",
        "medium": "medium",
        "thinkharder": "medium",
        "think-harder": "medium",
        "harder": "medium",
        "high": "high",
        "ultra": "high",
        "ultrathink": "high",
        "thinkhardest": "high",
        "highest": "high",
    }
    return table_.get(key)


def _lookup(table_: Mapping[str, str]) -> Callable[[str], str | None]:
    """A case-insensitive alias table as a normaliser (None = not a known value)."""

    def normalise(raw: str) -> str | None:
        return table_.get(raw.strip().lower())

    return normalise


_VERBOSE = _lookup(
    {
        **dict.fromkeys(("off", "false", "no", "0"), "off"),
        **dict.fromkeys(("on", "true", "yes", "1", "minimal"), "on"),
        **dict.fromkeys(("full", "all", "everything"), "full"),
    }
)
_REASONING = _lookup(
    {
        **dict.fromkeys(("off", "false", "no", "0", "hide", "hidden", "disable", "disabled"), "off"),
        **dict.fromkeys(("on", "true", "yes", "1", "show", "visible", "enable", "enabled"), "on"),
        **dict.fromkeys(("stream", "streaming", "draft", "live"), "stream"),
    }
)
_USAGE = _lookup(
    {
        **dict.fromkeys(("off", "false", "no", "0", "disable", "disabled"), "off"),
        **dict.fromkeys(("tokens", "token", "tok", "on", "minimal", "min"), "tokens"),
        **dict.fromkeys(("full", "session", "all"), "full"),
    }
)
_ELEVATED = _lookup(
    {
        **dict.fromkeys(("off", "false", "no", "0"), "off"),
        **dict.fromkeys(("on", "true", "yes", "1"), "on"),
        **dict.fromkeys(("ask", "prompt", "approval", "approve"), "ask"),
        **dict.fromkeys(("full", "auto", "auto-approve", "autoapprove"), "full"),
    }
)
_EXEC_HOST = _lookup(
    {h: h for h in ("sandbox", "gateway", "node", "remote-ssh", "remote-container", "remote-k8s-pod")}
)
_EXEC_SECURITY = _lookup({s: s for s in ("deny", "allowlist", "full")})
_EXEC_ASK = _lookup({s: s for s in ("off", "on-miss", "always")})
_SEND_POLICY = _lookup({"allow": "allow", "deny": "deny"})
_GROUP_ACTIVATION = _lookup({"mention": "mention", "always": "always"})

#: (field, normaliser, error message, whether "off" removes the override)
_ENUM_OVERRIDES: tuple[tuple[str, Callable[[str], str | None], str, bool], ...] = (
    ("reasoningLevel", _REASONING, 'invalid reasoningLevel (use "on"|"off"|"stream")', True),
    ("responseUsage", _USAGE, 'invalid responseUsage (use "off"|"tokens"|"full")', True),
    ("elevatedLevel", _ELEVATED, 'invalid elevatedLevel (use "on"|"off"|"ask"|"full")', False),
    (
        "execHost",
        _EXEC_HOST,
        'invalid execHost (use "sandbox"|"gateway"|"node"|"remote-ssh"|"remote-container"|"remote-k8s-pod")',
        False,
    ),
    ("execSecurity", _EXEC_SECURITY, 'invalid execSecurity (use "deny"|"allowlist"|"full")', False),
    ("execAsk", _EXEC_ASK, 'invalid execAsk (use "off"|"on-miss"|"always")', False),
    ("sendPolicy", _SEND_POLICY, 'invalid sendPolicy (use "allow"|"deny")', False),
    ("groupActivation", _GROUP_ACTIVATION, 'invalid groupActivation (use "mention"|"always")', False),
)


def apply_session_patch(
    raw: Mapping[str, Any], key: str, existing: SessionRecord | None, base: SessionRecord
) -> SessionRecord:
    """Apply the patch fields in ``raw`` (types already checked) to ``base``; raises InvalidRequest.

    ``existing`` is the stored row (None when the patch creates the session): lineage fields
    (``spawnedBy``/``spawnDepth``) may be set once, only on subagent keys, and never changed or cleared.
    Explicit null clears an override; ``"off"`` clears ``reasoningLevel``/``responseUsage`` but is kept
    for ``elevatedLevel``; labels are trimmed (blank is refused), null clears. Uniqueness is the caller's (it needs the store).
    """
    changes: dict[str, Any] = {}
    overrides = dict(base.overrides)

    if "spawnedBy" in raw:
        value = raw["spawnedBy"]
        if value is None:
            if existing is not None and existing.spawned_by:
                raise _invalid("spawnedBy cannot be cleared once set")
        else:
            trimmed = value.strip()
            if not trimmed:
                raise _invalid("invalid spawnedBy: empty")
            if not is_subagent_key(key):
                raise _invalid("spawnedBy is only supported for subagent:* sessions")
            if existing is not None and existing.spawned_by and existing.spawned_by != trimmed:
                raise _invalid("spawnedBy cannot be changed once set")
            changes["spawned_by"] = trimmed

    if "spawnDepth" in raw:
        value = raw["spawnDepth"]
        if value is None:
            if existing is not None and existing.spawn_depth is not None:
                raise _invalid("spawnDepth cannot be cleared once set")
        else:
            if not is_subagent_key(key):
                raise _invalid("spawnDepth is only supported for subagent:* sessions")
            depth = int(value)
            if depth < 0 or depth > MAX_SAFE_INTEGER:
                raise _invalid("invalid spawnDepth (use an integer >= 0)")
            if existing is not None and existing.spawn_depth is not None and existing.spawn_depth != depth:
                raise _invalid("spawnDepth cannot be changed once set")
            changes["spawn_depth"] = depth

    if "label" in raw:
        value = raw["label"]
        changes["label"] = None if value is None else parse_label(value)

    if "thinkingLevel" in raw:
        value = raw["thinkingLevel"]
        if value is None:
            overrides.pop("thinkingLevel", None)
        else:
            level = _norm_thinking(value)
            if level is None:
                raise _invalid(f"invalid thinkingLevel (use {'|'.join(THINKING_LEVELS[:5])})")
            overrides["thinkingLevel"] = level

    if "verboseLevel" in raw:
        value = raw["verboseLevel"]
        if value is None:
            overrides.pop("verboseLevel", None)
        else:
            level = _VERBOSE(value)
            if level is None:
                raise _invalid('invalid verboseLevel (use "on"|"off")')
            overrides["verboseLevel"] = level

    for name, normalise, message, off_clears in _ENUM_OVERRIDES:
        if name not in raw:
            continue
        value = raw[name]
        if value is None:
            overrides.pop(name, None)
            continue
        level = normalise(value)
        if level is None:
            raise _invalid(message)
        if off_clears and level == "off":
            overrides.pop(name, None)
        else:
            overrides[name] = level

    if "fastMode" in raw:
        value = raw["fastMode"]
        if value is None:
            overrides.pop("fastMode", None)
        else:
            overrides["fastMode"] = bool(value)

    if "execNode" in raw:
        value = raw["execNode"]
        if value is None:
            overrides.pop("execNode", None)
        else:
            if not value.strip():
                raise _invalid("invalid execNode: empty")
            overrides["execNode"] = value.strip()

    if "model" in raw:
        value = raw["model"]
        if value is None:
            overrides.pop("providerOverride", None)
            overrides.pop("modelOverride", None)
        else:
            trimmed = value.strip()
            if not trimmed:
                raise _invalid("invalid model: empty")
            provider, sep, model = trimmed.partition("/")
            if sep and (not provider.strip() or not model.strip()):
                raise _invalid(f"invalid model: {trimmed}")
            if sep:
                overrides["providerOverride"] = provider.strip().lower()
                overrides["modelOverride"] = model.strip()
            else:
                overrides.pop("providerOverride", None)
                overrides["modelOverride"] = trimmed

    return attrs.evolve(base, overrides=overrides, **changes)
