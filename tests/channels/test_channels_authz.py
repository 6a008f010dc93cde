"""Cross-group authorisation matrix (nanoclaw-behaviour.md §5.3 and contract case 12), against the
real decision function, plus the logged FORBIDDEN refusal."""

from __future__ import annotations

import io
import json

import pytest

from appliance import log as applog
from appliance.channels.authz import Action, GroupRecord, authorize, decide, is_valid_group_folder
from appliance.errors import Forbidden

MAIN = "whatsapp_main"
GROUPS = {
    "main@g.us": GroupRecord("main@g.us", MAIN, is_main=True),
    "other@g.us": GroupRecord("other@g.us", "other-group"),
    "third@g.us": GroupRecord("third@g.us", "third-group"),
}


@pytest.mark.parametrize(
    ("source", "action", "kw", "allowed"),
    [
        # (a) non-main messaging main: refused; own chat: allowed
        ("other-group", Action.SEND_MESSAGE, {"target_jid": "main@g.us"}, False),
        ("other-group", Action.SEND_MESSAGE, {"target_jid": "other@g.us"}, True),
        ("other-group", Action.SEND_MESSAGE, {"target_jid": "third@g.us"}, False),
        ("other-group", Action.SEND_MESSAGE, {"target_jid": "unknown@g.us"}, False),
        # (b) main may message anything, even unregistered chats
        (MAIN, Action.SEND_MESSAGE, {"target_jid": "unknown@g.us"}, True),
        (MAIN, Action.SEND_MESSAGE, {"target_jid": "third@g.us"}, True),
        (MAIN, Action.SEND_MESSAGE, {}, False),
        # (c) schedule_task: non-main only its own group; unregistered refused even for main
        ("other-group", Action.SCHEDULE_TASK, {"target_jid": "main@g.us"}, False),
        ("other-group", Action.SCHEDULE_TASK, {"target_jid": "other@g.us"}, True),
        (MAIN, Action.SCHEDULE_TASK, {"target_jid": "other@g.us"}, True),
        (MAIN, Action.SCHEDULE_TASK, {"target_jid": "nowhere@g.us"}, False),
        # (d) managing tasks: own or main; unknown ids refused like foreign ones
        ("other-group", Action.MANAGE_TASK, {"task_folder": MAIN}, False),
        ("other-group", Action.MANAGE_TASK, {"task_folder": "other-group"}, True),
        ("other-group", Action.MANAGE_TASK, {"task_folder": None}, False),
        (MAIN, Action.MANAGE_TASK, {"task_folder": "third-group"}, True),
        (MAIN, Action.MANAGE_TASK, {"task_folder": None}, False),
        ("other-group", Action.LIST_TASKS, {"task_folder": "third-group"}, False),
        ("other-group", Action.LIST_TASKS, {}, True),
        # (e) register_group from non-main: refused; (f) from main with a traversal folder: refused
        ("other-group", Action.REGISTER_GROUP, {"new_folder": "fine"}, False),
        (MAIN, Action.REGISTER_GROUP, {"new_folder": "../../outside"}, False),
        (MAIN, Action.REGISTER_GROUP, {"new_folder": "family-chat"}, True),
        (MAIN, Action.REGISTER_GROUP, {"new_folder": "global"}, False),
        # (g) refresh_groups only from main
        ("other-group", Action.REFRESH_GROUPS, {}, False),
        (MAIN, Action.REFRESH_GROUPS, {}, True),
        # deny by default: unknown actions and unknown sources
        (MAIN, "delete_everything", {}, False),
        ("ghost-folder", Action.SEND_MESSAGE, {"target_jid": "other@g.us"}, False),
    ],
)
def test_matrix(source: str, action: str, kw: dict[str, str | None], allowed: bool) -> None:
    assert decide(source, action, groups=GROUPS, **kw).allowed is allowed


def test_payload_cannot_claim_main() -> None:
    """Identity is the folder; a group whose record is not main stays non-main whatever it says."""
    groups = {**GROUPS, "fake@g.us": GroupRecord("fake@g.us", "fake-main", is_main=False)}
    assert not decide("fake-main", Action.REGISTER_GROUP, groups=groups, new_folder="x").allowed


def test_authorize_logs_and_raises_forbidden() -> None:
    stream = io.StringIO()
    applog.configure(level="info", stream=stream, human=False)
    try:
        with pytest.raises(Forbidden) as info:
            authorize("other-group", Action.SEND_MESSAGE, groups=GROUPS, target_jid="main@g.us")
    finally:
        applog.configure()
    assert info.value.code == "FORBIDDEN"
    assert info.value.details == {
        "action": "send_message",
        "reason": "foreign_chat",
        "sourceFolder": "other-group",
    }
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "authz_denied"
    assert line["target_jid"] == "main@g.us"
    assert authorize(MAIN, Action.REFRESH_GROUPS, groups=GROUPS).allowed


@pytest.mark.parametrize(
    ("folder", "valid"),
    [
        ("main", True),
        ("family-chat", True),
        ("Team_42", True),
        ("../../etc", False),
        ("/tmp", False),
        ("global", False),
        ("GLOBAL", False),
        ("", False),
        (" a", False),
        ("a" * 65, False),
        ("a" * 64, True),
    ],
)
def test_group_folder_rule(folder: str, valid: bool) -> None:
    assert is_valid_group_folder(folder) is valid
