"""OpenClaw session keys: parse, format and normalise (sans-IO).

Rules (OpenClaw's ``routing/session-key.ts``):
- a stored key is ``agent:<agentId>:<rest>`` or the literal ``global``;
- the request alias ``main`` (or an empty ``rest``) means ``agent:<agentId>:<mainKey>``;
- a key that does not start with ``agent:`` is scoped to the default agent: ``cron:job1`` becomes
  ``agent:main:cron:job1``;
- keys are compared lower-cased (peer ids and channel names are lower-cased by OpenClaw's builders);
- agent ids match ``[a-z0-9][a-z0-9_-]{0,63}``.

The shapes of ``rest`` decide the kind: ``direct:<peer>``, ``<channel>:direct:<peer>``,
``<channel>:<account>:direct:<peer>``, ``<channel>:group|channel:<peer>``, ``subagent:…``, ``cron:…``,
``hook:…``, ``node:…``, ``acp:…``, ``global``, and anything else as a free-form key.
Bad keys raise :class:`~appliance.errors.ValidationFailed` with ``details`` naming the field.
"""

from __future__ import annotations

import enum
import re

import attrs

from appliance.errors import ValidationFailed

__all__ = [
    "DEFAULT_AGENT_ID",
    "DEFAULT_MAIN_KEY",
    "GLOBAL_KEY",
    "MAX_KEY_LENGTH",
    "SessionKey",
    "SessionKeyKind",
    "format_session_key",
    "is_subagent_key",
    "main_session_key",
    "normalise_agent_id",
    "normalise_session_key",
    "parse_session_key",
]

DEFAULT_AGENT_ID = "main"
DEFAULT_MAIN_KEY = "main"
GLOBAL_KEY = "global"
MAX_KEY_LENGTH = 512

_AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# printable, no whitespace; ':' separates segments
_SEGMENT = re.compile(r"^[^\s:\x00-\x1f\x7f]+$")
_PEER_KINDS = frozenset({"group", "channel"})


class SessionKeyKind(enum.StrEnum):
    """What a key's shape says about the conversation it names."""

    GLOBAL = "global"
    MAIN = "main"
    DIRECT = "direct"
    GROUP = "group"
    CHANNEL = "channel"
    SUBAGENT = "subagent"
    CRON = "cron"
    HOOK = "hook"
    NODE = "node"
    ACP = "acp"
    OTHER = "other"


@attrs.frozen
class SessionKey:
    """A parsed, normalised key. ``agent_id`` is ``None`` only for the literal ``global`` key."""

    agent_id: str | None
    rest: tuple[str, ...]
    main_key: str = DEFAULT_MAIN_KEY

    @property
    def kind(self) -> SessionKeyKind:
        return _classify(self)

    @property
    def channel(self) -> str | None:
        """The channel name for per-channel direct keys and group/channel keys."""
        rest = self.rest
        if len(rest) >= 3 and rest[1] in _PEER_KINDS:
            return rest[0]
        if len(rest) == 3 and rest[1] == "direct":
            return rest[0]
        if len(rest) == 4 and rest[2] == "direct":
            return rest[0]
        return None

    @property
    def account_id(self) -> str | None:
        if len(self.rest) == 4 and self.rest[2] == "direct":
            return self.rest[1]
        return None

    @property
    def peer_id(self) -> str | None:
        kind = self.kind
        if kind in (SessionKeyKind.DIRECT, SessionKeyKind.GROUP, SessionKeyKind.CHANNEL):
            return self.rest[-1]
        return None

    def __str__(self) -> str:
        return format_session_key(self)


def _classify(key: SessionKey) -> SessionKeyKind:
    rest = key.rest
    if key.agent_id is None:
        return SessionKeyKind.GLOBAL
    if rest == (key.main_key,):
        return SessionKeyKind.MAIN
    head = rest[0]
    if head == "global" and len(rest) == 1:
        return SessionKeyKind.GLOBAL
    if (
        (head == "direct" and len(rest) == 2)
        or (len(rest) == 3 and rest[1] == "direct")
        or (len(rest) == 4 and rest[2] == "direct")
    ):
        return SessionKeyKind.DIRECT
    if len(rest) >= 3 and rest[1] in _PEER_KINDS:
        return SessionKeyKind.GROUP if rest[1] == "group" else SessionKeyKind.CHANNEL
    special = {
        "subagent": SessionKeyKind.SUBAGENT,
        "cron": SessionKeyKind.CRON,
        "hook": SessionKeyKind.HOOK,
        "node": SessionKeyKind.NODE,
        "acp": SessionKeyKind.ACP,
    }
    if head in special and len(rest) >= 2:
        return special[head]
    return SessionKeyKind.OTHER


def format_session_key(key: SessionKey) -> str:
    """The wire/store string of ``key``."""
    if key.agent_id is None:
        return GLOBAL_KEY
    return ":".join(("agent", key.agent_id, *key.rest))


def normalise_agent_id(raw: str, *, field: str = "agentId") -> str:
    """Trimmed, lower-cased agent id; raises ValidationFailed unless it matches ``[a-z0-9][a-z0-9_-]{0,63}``."""
    return _check_agent_id(raw.strip().lower(), field)


def main_session_key(agent_id: str = DEFAULT_AGENT_ID, main_key: str = DEFAULT_MAIN_KEY) -> str:
    """``agent:<agentId>:<mainKey>``, the session a ``main`` alias resolves to."""
    return (
        f"agent:{_check_agent_id(agent_id.strip().lower(), 'agentId')}:{main_key.strip().lower() or 'main'}"
    )


def _invalid(field: str, message: str, value: object) -> ValidationFailed:
    return ValidationFailed(message, details={"field": field, "reason": message, "value": value})


def _check_agent_id(agent_id: str, field: str) -> str:
    if not _AGENT_ID.match(agent_id):
        raise _invalid(field, f"invalid {field}: bad agent id {agent_id!r}", agent_id)
    return agent_id


def parse_session_key(raw: str, *, main_key: str = DEFAULT_MAIN_KEY, field: str = "key") -> SessionKey:
    """Parse an already-canonical key (``agent:<id>:<rest>`` or ``global``) without aliasing.

    Raises ValidationFailed when the key is empty, too long, not lower-case, has empty or
    whitespace-bearing segments, or an invalid agent id.
    """
    if not isinstance(raw, str):
        raise _invalid(field, f"invalid {field}: must be a string", repr(raw))
    if not raw:
        raise _invalid(field, f"invalid {field}: empty", raw)
    if len(raw) > MAX_KEY_LENGTH:
        raise _invalid(field, f"invalid {field}: too long (max {MAX_KEY_LENGTH})", raw[:64])
    if raw != raw.lower():
        raise _invalid(field, f"invalid {field}: session keys are lower-case", raw)
    if raw == GLOBAL_KEY:
        return SessionKey(None, (), main_key)
    parts = raw.split(":")
    if parts[0] != "agent" or len(parts) < 3:
        raise _invalid(field, f"invalid {field}: expected agent:<agentId>:<rest>", raw)
    agent_id = _check_agent_id(parts[1], field)
    rest = tuple(parts[2:])
    for segment in rest:
        if not _SEGMENT.match(segment):
            raise _invalid(field, f"invalid {field}: empty or blank segment", raw)
    return SessionKey(agent_id, rest, main_key)


def normalise_session_key(
    raw: object,
    *,
    agent_id: str = DEFAULT_AGENT_ID,
    main_key: str = DEFAULT_MAIN_KEY,
    field: str = "key",
) -> SessionKey:
    """Turn a request key into the stored form, as OpenClaw's ``toAgentStoreSessionKey`` does.

    Idempotent: ``normalise(format(normalise(x))) == normalise(x)``. Raises ValidationFailed.
    """
    if not isinstance(raw, str):
        raise _invalid(field, f"invalid {field}: must be a string", repr(raw))
    text = raw.strip().lower()
    if not text:
        raise _invalid(field, f"invalid {field}: empty", raw)
    main_key = main_key.strip().lower() or DEFAULT_MAIN_KEY
    default_agent = _check_agent_id(agent_id.strip().lower(), "agentId")
    if text == GLOBAL_KEY:
        return SessionKey(None, (), main_key)
    if text in (DEFAULT_MAIN_KEY, main_key):
        return SessionKey(default_agent, (main_key,), main_key)
    if not text.startswith("agent:"):
        text = f"agent:{default_agent}:{text}"
    return parse_session_key(text, main_key=main_key, field=field)


def is_subagent_key(key: str) -> bool:
    """True for ``agent:<id>:subagent:…`` (and bare ``subagent:…``) keys, which may carry spawnedBy."""
    lowered = key.strip().lower()
    if lowered.startswith("subagent:"):
        return True
    parts = lowered.split(":")
    return len(parts) >= 4 and parts[0] == "agent" and parts[2] == "subagent"
