"""The slot and trial state machine (sans-IO): what the updater should do next, given what is on disk.

Rules:
- The on-disk truth is three things: the ``current`` and ``previous`` symlinks (versions here) and the
  state record (:class:`OtaState`). Every decision is a pure function of those plus ``now``.
- A switch writes the trial record first (durably), then ``current``, then ``previous``. So after a crash
  :func:`reconcile` sees either ``current`` still at the old version (the switch never happened: drop the
  trial) or at the new one (finish ``previous`` from the record).
- A rollback writes its journal first; :func:`reconcile` says "finish the rollback" until it is cleared.
- A trial commits only on a passed health check before its deadline; a failed check, a passed deadline or
  more boots than ``max_boots`` revert to the previous slot.
- No clocks, no ``os``: time comes in as ``now`` (seconds since the epoch).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = [
    "UPDATE_STEPS",
    "BootAction",
    "CommitAction",
    "Links",
    "OtaState",
    "Reconciliation",
    "RollbackJournal",
    "Step",
    "Trial",
    "decide_boot",
    "decide_commit",
    "plan_update",
    "reconcile",
    "space_needed",
    "state_from_json",
    "state_to_json",
]


class Step(enum.StrEnum):
    """The updater's steps, in order; also the values of the ``OTA_TEST_CRASH_AT`` test switch."""

    DOWNLOAD = "download"
    VERIFY = "verify"
    UNPACK = "unpack"
    SELFCHECK = "selfcheck"
    SNAPSHOT = "snapshot"
    SWITCH = "switch"
    RESTART = "restart"
    COMMIT = "commit"


UPDATE_STEPS: tuple[Step, ...] = tuple(Step)


def plan_update(*, first_install: bool, wait_for_commit: bool) -> tuple[Step, ...]:
    """The steps of one update. A first install has nothing to snapshot or fall back to: it commits at once."""
    if first_install:
        return (Step.DOWNLOAD, Step.VERIFY, Step.UNPACK, Step.SELFCHECK, Step.SWITCH, Step.COMMIT)
    steps = [
        Step.DOWNLOAD,
        Step.VERIFY,
        Step.UNPACK,
        Step.SELFCHECK,
        Step.SNAPSHOT,
        Step.SWITCH,
        Step.RESTART,
    ]
    if wait_for_commit:
        steps.append(Step.COMMIT)
    return tuple(steps)


@attrs.frozen
class Trial:
    """A version that is current but not yet proven healthy."""

    version: str
    previous: str
    started: int
    deadline: int
    boots: int = 0
    max_boots: int = 3


@attrs.frozen
class RollbackJournal:
    """A rollback in progress: going from ``from_version`` back to ``to_version``."""

    from_version: str
    to_version: str
    reason: str
    aside: str  # directory (relative to the root) that receives the newer database


@attrs.frozen
class OtaState:
    trial: Trial | None = None
    rollback: RollbackJournal | None = None
    committed: str | None = None  # the last version that passed its trial
    rolled_back_from: str | None = None  # set by a rollback, so running it twice is a no-op


@attrs.frozen
class Links:
    """Versions the ``current`` and ``previous`` symlinks point at (None: no link)."""

    current: str | None
    previous: str | None


class BootAction(enum.StrEnum):
    NONE = "none"  # not in trial: start normally
    TRIAL = "trial"  # in trial, boot counted: start and let the commit check decide
    ROLLBACK = "rollback"  # the trial ran out of boots or time: revert before starting


class CommitAction(enum.StrEnum):
    NOTHING = "nothing"  # not in trial
    COMMIT = "commit"
    WAIT = "wait"  # not healthy yet, still within the deadline
    ROLLBACK = "rollback"


@attrs.frozen
class Reconciliation:
    state: OtaState
    set_previous: str | None = None  # point ``previous`` here (finishing a switch)
    finish_rollback: bool = False
    note: str = ""  # what was repaired, for the log; empty when nothing was


def reconcile(state: OtaState, links: Links) -> Reconciliation:
    """Repair the result of a crash at any instant of a switch or rollback (idempotent)."""
    if state.rollback is not None:
        return Reconciliation(state, finish_rollback=True, note="finishing an interrupted rollback")
    trial = state.trial
    if trial is None:
        return Reconciliation(state)
    if links.current == trial.version:
        if links.previous != trial.previous:
            return Reconciliation(state, set_previous=trial.previous, note="finishing an interrupted switch")
        return Reconciliation(state)
    if links.current == trial.previous:
        return Reconciliation(
            attrs.evolve(state, trial=None), note=f"switch to {trial.version} never happened; dropped trial"
        )
    return Reconciliation(attrs.evolve(state, trial=None), note="trial does not match current; dropped it")


def decide_boot(state: OtaState, now: int) -> tuple[OtaState, BootAction, str]:
    """Called before the service starts: count a trial boot, or revert when boots or time ran out."""
    trial = state.trial
    if trial is None:
        return state, BootAction.NONE, ""
    boots = trial.boots + 1
    if boots > trial.max_boots:
        return state, BootAction.ROLLBACK, f"trial of {trial.version} used {trial.boots} boots without commit"
    if now > trial.deadline:
        return state, BootAction.ROLLBACK, f"trial of {trial.version} passed its deadline without commit"
    return attrs.evolve(state, trial=attrs.evolve(trial, boots=boots)), BootAction.TRIAL, ""


def decide_commit(state: OtaState, now: int, healthy: bool | None) -> tuple[CommitAction, str]:
    """``healthy``: True passed, False failed for sure, None not answering yet."""
    trial = state.trial
    if trial is None:
        return CommitAction.NOTHING, "not in trial"
    if healthy is True:
        return CommitAction.COMMIT, f"{trial.version} passed its health check"
    if healthy is False:
        return CommitAction.ROLLBACK, f"{trial.version} failed its health check"
    if now > trial.deadline:
        return CommitAction.ROLLBACK, f"{trial.version} did not become healthy before its deadline"
    return CommitAction.WAIT, f"{trial.version} not healthy yet"


def space_needed(*, download_remaining: int, slot_bytes: int, snapshot_bytes: int, margin: int) -> int:
    """Bytes that must be free before an update starts: what is left to download, the unpacked slot, the
    database snapshot and a safety margin (the database keeps growing while we work)."""
    return max(0, download_remaining) + slot_bytes + snapshot_bytes + margin


def state_to_json(state: OtaState) -> dict[str, Any]:
    return {
        "schema": 1,
        "trial": attrs.asdict(state.trial) if state.trial else None,
        "rollback": attrs.asdict(state.rollback) if state.rollback else None,
        "committed": state.committed,
        "rolled_back_from": state.rolled_back_from,
    }


def state_from_json(raw: Any) -> OtaState:
    """Parse the state record; raises ValueError/TypeError/KeyError on anything unexpected."""
    if not isinstance(raw, dict) or raw.get("schema") != 1:
        raise ValueError("not an OTA state record")
    trial = raw.get("trial")
    rollback = raw.get("rollback")
    return OtaState(
        trial=Trial(**trial) if trial else None,
        rollback=RollbackJournal(**rollback) if rollback else None,
        committed=raw.get("committed"),
        rolled_back_from=raw.get("rolled_back_from"),
    )
