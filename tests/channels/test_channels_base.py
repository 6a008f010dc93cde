"""Sans-IO helpers: splitting, mention detection, allowlists, backoff, offsets, registry and router."""

from __future__ import annotations

import apsw
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.channels import (
    CHANNEL_DESCRIPTORS,
    Allowlist,
    ChannelKind,
    ChannelRouter,
    MemoryOffsetStore,
    SentMessage,
    SqliteOffsetStore,
    backoff_delay,
    mentions_bot,
    owner_kind,
    require_implemented,
    split_message,
)
from appliance.errors import ConfigError, NotFound


def test_split_prefers_boundaries_and_keeps_everything() -> None:
    assert split_message("short", 10) == ["short"]
    assert split_message("", 10) == [""]
    assert split_message("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]
    assert split_message("para one.\n\npara two.", 12) == ["para one.", "para two."]
    assert split_message("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    with pytest.raises(ValueError):
        split_message("x", 0)


@given(st.text(alphabet=st.sampled_from("ab \n"), max_size=300), st.integers(1, 40))
def test_split_property(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert all(len(p) <= limit for p in parts)
    # only whitespace at the cuts may disappear
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("@Andy hello", True),
        ("@andy hi", True),
        ("hey @ANDY, look", True),
        ("@Andy's thing", True),
        ("@Andyextra hello", False),
        ("email andy@Andy.com", False),
        ("no mention", False),
    ],
)
def test_mentions(text: str, hit: bool) -> None:
    assert mentions_bot(text, ["Andy"]) is hit


def test_allowlist_denies_by_default() -> None:
    assert not Allowlist().admits(user_id="1", chat_id="2")
    assert Allowlist.of([1]).admits(user_id="1", chat_id="x")
    assert Allowlist.of(chats=[-5]).admits(user_id="9", chat_id="-5")
    assert Allowlist(allow_all=True).admits(user_id="9", chat_id="9")


def test_backoff_delay_grows_caps_and_jitters() -> None:
    assert [backoff_delay(a, base_s=1, cap_s=10, jitter=0, rand=0.3) for a in range(6)] == [
        1,
        2,
        4,
        8,
        10,
        10,
    ]
    assert backoff_delay(3, base_s=1, cap_s=10, jitter=0.5, rand=1.0) == 4.0
    assert backoff_delay(1000, base_s=1, cap_s=10, jitter=0.5, rand=0.0) == 10.0


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_offsets_are_monotonic_and_durable(store_kind: str, tmp_path: object) -> None:
    if store_kind == "memory":
        store: MemoryOffsetStore | SqliteOffsetStore = MemoryOffsetStore()
    else:
        path = f"{tmp_path}/offsets.db"
        store = SqliteOffsetStore(apsw.Connection(path))
    assert store.load("telegram:1") is None
    store.advance("telegram:1", 10)
    store.advance("telegram:1", 5)  # never backwards
    assert store.load("telegram:1") == 10
    if store_kind == "sqlite":
        reopened = SqliteOffsetStore(apsw.Connection(f"{tmp_path}/offsets.db"))
        assert reopened.load("telegram:1") == 10


def test_descriptors_and_unimplemented_channels() -> None:
    assert CHANNEL_DESCRIPTORS[ChannelKind.TELEGRAM].capabilities.max_message_chars == 4096
    assert CHANNEL_DESCRIPTORS[ChannelKind.DISCORD].capabilities.max_message_chars == 2000
    assert require_implemented("telegram").implemented
    with pytest.raises(ConfigError, match="not implemented"):
        require_implemented("slack")
    with pytest.raises(ConfigError, match="unknown channel"):
        require_implemented("myspace")


async def test_router_sends_to_owner_and_refuses_orphans() -> None:
    class Fake:
        name = "telegram"
        capabilities = CHANNEL_DESCRIPTORS[ChannelKind.TELEGRAM].capabilities

        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        async def run(self, handler: object, *, max_messages: int | None = None) -> int:
            return 0

        async def send(self, chat_id: str, text: str) -> SentMessage:
            self.sent.append((chat_id, text))
            return SentMessage(chat_id, ("1",))

        async def aclose(self) -> None:
            return None

    router = ChannelRouter()
    fake = Fake()
    router.add(ChannelKind.TELEGRAM, fake)
    assert owner_kind("120363@g.us") is ChannelKind.WHATSAPP
    assert router.owns("tg:5")
    assert not router.owns("x@g.us")
    await router.send("tg:5", "hi")
    assert fake.sent == [("tg:5", "hi")]
    with pytest.raises(NotFound):
        await router.send("x@g.us", "hi")
