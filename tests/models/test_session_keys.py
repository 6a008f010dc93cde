"""Session keys: OpenClaw's forms parse to the right kind, normalise is idempotent, bad keys are typed errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.errors import ValidationFailed
from appliance.models.session_keys import (
    SessionKey,
    SessionKeyKind,
    format_session_key,
    is_subagent_key,
    main_session_key,
    normalise_session_key,
    parse_session_key,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("main", "agent:main:main"),
        ("  MAIN ", "agent:main:main"),
        ("global", "global"),
        ("agent:main:main", "agent:main:main"),
        ("Agent:Work:Telegram:Group:-100ABC", "agent:work:telegram:group:-100abc"),
        ("cron:nightly", "agent:main:cron:nightly"),
        ("hook:0b7e", "agent:main:hook:0b7e"),
        ("node:pi-4", "agent:main:node:pi-4"),
        ("subagent:child", "agent:main:subagent:child"),
        ("direct:+15551234", "agent:main:direct:+15551234"),
        ("test1", "agent:main:test1"),
    ],
)
def test_normalise_matches_openclaw(raw: str, expected: str) -> None:
    assert str(normalise_session_key(raw)) == expected


def test_normalise_uses_agent_and_main_key() -> None:
    assert str(normalise_session_key("main", agent_id="Work", main_key="Home")) == "agent:work:home"
    assert str(normalise_session_key("home", agent_id="work", main_key="home")) == "agent:work:home"
    assert str(normalise_session_key("cron:x", agent_id="work")) == "agent:work:cron:x"
    assert main_session_key() == "agent:main:main"


@pytest.mark.parametrize(
    ("key", "kind", "channel", "account", "peer"),
    [
        ("agent:main:main", SessionKeyKind.MAIN, None, None, None),
        ("global", SessionKeyKind.GLOBAL, None, None, None),
        ("agent:main:global", SessionKeyKind.GLOBAL, None, None, None),
        ("agent:main:direct:alice", SessionKeyKind.DIRECT, None, None, "alice"),
        ("agent:main:telegram:direct:alice", SessionKeyKind.DIRECT, "telegram", None, "alice"),
        ("agent:main:telegram:bot1:direct:alice", SessionKeyKind.DIRECT, "telegram", "bot1", "alice"),
        ("agent:main:whatsapp:group:123@g.us", SessionKeyKind.GROUP, "whatsapp", None, "123@g.us"),
        ("agent:main:discord:channel:42", SessionKeyKind.CHANNEL, "discord", None, "42"),
        ("agent:main:subagent:abc", SessionKeyKind.SUBAGENT, None, None, None),
        ("agent:main:cron:job-1", SessionKeyKind.CRON, None, None, None),
        ("agent:main:hook:abc", SessionKeyKind.HOOK, None, None, None),
        ("agent:main:node:n1", SessionKeyKind.NODE, None, None, None),
        ("agent:main:acp:0b7e", SessionKeyKind.ACP, None, None, None),
        ("agent:main:dashboard:0b7e", SessionKeyKind.OTHER, None, None, None),
        ("agent:main:test1", SessionKeyKind.OTHER, None, None, None),
    ],
)
def test_kinds(
    key: str, kind: SessionKeyKind, channel: str | None, account: str | None, peer: str | None
) -> None:
    parsed = parse_session_key(key)
    assert parsed.kind is kind
    assert parsed.channel == channel
    assert parsed.account_id == account
    assert parsed.peer_id == peer
    assert format_session_key(parsed) == key


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "agent:",
        "agent:main",
        "agent::x",
        "agent:main::x",
        "agent:-bad:x",
        "agent:main:a b",
        "x" * 600,
    ],
)
def test_bad_keys_are_validation_errors(bad: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        normalise_session_key(bad)
    assert info.value.details is not None
    assert info.value.details["field"] == "key"


def test_non_string_and_upper_case_parse_errors() -> None:
    with pytest.raises(ValidationFailed, match="must be a string"):
        normalise_session_key(42)
    with pytest.raises(ValidationFailed, match="lower-case"):
        parse_session_key("agent:Main:main")


def test_subagent_detection() -> None:
    assert is_subagent_key("agent:main:subagent:x")
    assert is_subagent_key("subagent:x")
    assert not is_subagent_key("agent:main:main")
    assert not is_subagent_key("agent:main:subagent")


_segment = (
    st.text(
        alphabet=st.characters(
            codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), exclude_characters=":\x85\xa0"
        ),
        min_size=1,
        max_size=12,
    )
    .map(str.lower)
    .filter(lambda s: s == s.lower() and s.strip() == s and s and not any(c.isspace() for c in s))
)
_agent = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)
_keys = st.one_of(
    st.just(SessionKey(None, ())),
    st.builds(SessionKey, _agent, st.lists(_segment, min_size=1, max_size=6).map(tuple)),
)


@given(_keys)
def test_parse_format_round_trip(key: SessionKey) -> None:
    assert parse_session_key(format_session_key(key)) == key


@given(st.text(max_size=80))
def test_normalise_is_idempotent_or_rejects(raw: str) -> None:
    try:
        once = normalise_session_key(raw)
    except ValidationFailed:
        return
    assert normalise_session_key(str(once)) == once
    assert str(once) == str(once).lower()
