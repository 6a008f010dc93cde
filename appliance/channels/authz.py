"""Cross-group authorisation, NanoClaw v1 style (``nanoclaw-behaviour.md`` §5.3): the one place every
cross-group action is decided.

Rules:
- identity is the *source group folder* the request came from (the IPC directory, the session's group),
  never a field inside the payload;
- the main group may message any chat (registered or not), schedule tasks for any *registered* chat,
  manage any task, register groups and refresh group metadata;
- a non-main group may message only its own chat(s), schedule and manage only its own tasks, and may
  never register groups or refresh metadata;
- an unregistered target is refused for ``schedule_task`` even for main; unknown task ids are refused
  like foreign ones; registration needs a valid folder and can never grant ``is_main``;
- anything not listed is denied (deny by default). :func:`authorize` logs every refusal
  (``authz_denied``) and raises :class:`~appliance.errors.Forbidden` (wire code ``FORBIDDEN``);
  :func:`decide` is the pure predicate behind it, so tests exercise the real decision, not a copy.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

import attrs

from appliance.errors import Forbidden
from appliance.log import get_logger

__all__ = [
    "Action",
    "Decision",
    "GroupRecord",
    "authorize",
    "decide",
    "is_valid_group_folder",
]

log = get_logger("appliance.channels.authz")

_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_RESERVED_FOLDERS = frozenset({"global"})


class Action(enum.StrEnum):
    SEND_MESSAGE = "send_message"
    SCHEDULE_TASK = "schedule_task"
    MANAGE_TASK = "manage_task"  # pause, resume, cancel, update
    LIST_TASKS = "list_tasks"
    REGISTER_GROUP = "register_group"
    REFRESH_GROUPS = "refresh_groups"


@attrs.frozen
class GroupRecord:
    """A registered chat: its JID (``tg:42``, ``...@g.us``), its folder (the identity) and main flag."""

    jid: str
    folder: str
    is_main: bool = False


@attrs.frozen
class Decision:
    allowed: bool
    reason: str


def is_valid_group_folder(folder: str) -> bool:
    """NanoClaw's folder rule: 1-64 of ``[A-Za-z0-9_-]``, starting alphanumeric, not ``global``."""
    return bool(_FOLDER.fullmatch(folder)) and folder.lower() not in _RESERVED_FOLDERS


def _is_main(folder: str, groups: Mapping[str, GroupRecord]) -> bool:
    return any(g.is_main and g.folder == folder for g in groups.values())


def decide(
    source_folder: str,
    action: Action | str,
    *,
    groups: Mapping[str, GroupRecord],
    target_jid: str | None = None,
    task_folder: str | None = None,
    new_folder: str | None = None,
) -> Decision:
    """Pure decision for one request. ``groups`` maps JID -> record (the registered groups).

    ``target_jid`` is the chat for SEND_MESSAGE / SCHEDULE_TASK; ``task_folder`` the owning folder of the
    task for MANAGE_TASK (None when the id is unknown); ``new_folder`` the folder for REGISTER_GROUP."""
    main = _is_main(source_folder, groups)
    if action == Action.SEND_MESSAGE:
        if target_jid is None:
            return Decision(False, "missing_target")
        if main:
            return Decision(True, "main_any_chat")
        target = groups.get(target_jid)
        if target is not None and target.folder == source_folder:
            return Decision(True, "own_chat")
        return Decision(False, "foreign_chat")
    if action == Action.SCHEDULE_TASK:
        target = groups.get(target_jid) if target_jid is not None else None
        if target is None:
            return Decision(False, "unregistered_target")
        if main or target.folder == source_folder:
            return Decision(True, "main_registered_target" if main else "own_group")
        return Decision(False, "foreign_group")
    if action == Action.MANAGE_TASK:
        if task_folder is None:
            return Decision(False, "unknown_task")
        if main or task_folder == source_folder:
            return Decision(True, "main_any_task" if main else "own_task")
        return Decision(False, "foreign_task")
    if action == Action.LIST_TASKS:
        if main or task_folder in (None, source_folder):
            return Decision(True, "main_all_tasks" if main else "own_tasks")
        return Decision(False, "foreign_tasks")
    if action == Action.REGISTER_GROUP:
        if not main:
            return Decision(False, "not_main")
        if new_folder is None or not is_valid_group_folder(new_folder):
            return Decision(False, "invalid_folder")
        return Decision(True, "main_registers")
    if action == Action.REFRESH_GROUPS:
        return Decision(True, "main_refreshes") if main else Decision(False, "not_main")
    return Decision(False, "unknown_action")


def authorize(
    source_folder: str,
    action: Action | str,
    *,
    groups: Mapping[str, GroupRecord],
    target_jid: str | None = None,
    task_folder: str | None = None,
    new_folder: str | None = None,
) -> Decision:
    """:func:`decide`, then log and raise on refusal. Raises Forbidden (``details.reason`` says why)."""
    decision = decide(
        source_folder,
        action,
        groups=groups,
        target_jid=target_jid,
        task_folder=task_folder,
        new_folder=new_folder,
    )
    if not decision.allowed:
        log.warning(
            "authz_denied",
            source_folder=source_folder,
            action=str(action),
            target_jid=target_jid,
            task_folder=task_folder,
            reason=decision.reason,
        )
        raise Forbidden(
            f"{source_folder} may not {action}",
            details={"action": str(action), "reason": decision.reason, "sourceFolder": source_folder},
        )
    return decision
