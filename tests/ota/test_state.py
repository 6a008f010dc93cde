"""The sans-IO slot/trial state machine: transitions as data, no files, no clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from appliance.ota.state import (
    UPDATE_STEPS,
    BootAction,
    CommitAction,
    Links,
    OtaState,
    RollbackJournal,
    Step,
    Trial,
    decide_boot,
    decide_commit,
    plan_update,
    reconcile,
    space_needed,
    state_from_json,
    state_to_json,
)

TRIAL = Trial(version="1.1.0", previous="1.0.0", started=1000, deadline=1300, boots=0, max_boots=3)
IN_TRIAL = OtaState(trial=TRIAL, committed="1.0.0")


def test_steps_cover_the_acceptance_list_in_order() -> None:
    assert [s.value for s in UPDATE_STEPS] == [
        "download", "verify", "unpack", "selfcheck", "snapshot", "switch", "restart", "commit",
    ]  # fmt: skip
    assert plan_update(first_install=True, wait_for_commit=True) == (
        Step.DOWNLOAD, Step.VERIFY, Step.UNPACK, Step.SELFCHECK, Step.SWITCH, Step.COMMIT,
    )  # fmt: skip
    assert Step.COMMIT not in plan_update(first_install=False, wait_for_commit=False)
    assert plan_update(first_install=False, wait_for_commit=True) == UPDATE_STEPS


def test_reconcile_crash_before_current_moved_drops_the_trial() -> None:
    fix = reconcile(IN_TRIAL, Links(current="1.0.0", previous="0.9.0"))
    assert fix.state.trial is None
    assert fix.set_previous is None
    assert "never happened" in fix.note


def test_reconcile_crash_between_current_and_previous_finishes_the_switch() -> None:
    fix = reconcile(IN_TRIAL, Links(current="1.1.0", previous="0.9.0"))
    assert fix.set_previous == "1.0.0"
    assert fix.state == IN_TRIAL


def test_reconcile_is_a_no_op_when_consistent() -> None:
    assert reconcile(IN_TRIAL, Links("1.1.0", "1.0.0")).note == ""
    assert reconcile(OtaState(), Links("1.0.0", None)).note == ""


def test_reconcile_finishes_a_journaled_rollback() -> None:
    state = OtaState(rollback=RollbackJournal("1.1.0", "1.0.0", "operator", "aside/x"))
    assert reconcile(state, Links("1.1.0", "1.0.0")).finish_rollback


def test_boot_counter_runs_out() -> None:
    state = IN_TRIAL
    for expected in (1, 2, 3):
        state, action, _ = decide_boot(state, now=1100)
        assert action is BootAction.TRIAL
        assert state.trial is not None
        assert state.trial.boots == expected
    _, action, reason = decide_boot(state, now=1100)
    assert action is BootAction.ROLLBACK
    assert "3 boots" in reason


def test_boot_after_deadline_reverts() -> None:
    _, action, reason = decide_boot(IN_TRIAL, now=1301)
    assert action is BootAction.ROLLBACK
    assert "deadline" in reason
    assert decide_boot(OtaState(committed="1.0.0"), now=5)[1] is BootAction.NONE


def test_commit_decisions() -> None:
    assert decide_commit(IN_TRIAL, 1100, True)[0] is CommitAction.COMMIT
    assert decide_commit(IN_TRIAL, 1100, False)[0] is CommitAction.ROLLBACK
    assert decide_commit(IN_TRIAL, 1100, None)[0] is CommitAction.WAIT
    assert decide_commit(IN_TRIAL, 1301, None)[0] is CommitAction.ROLLBACK
    assert decide_commit(OtaState(), 1100, True)[0] is CommitAction.NOTHING


def test_space_needed_counts_slot_snapshot_and_what_is_left_to_download() -> None:
    assert space_needed(download_remaining=10, slot_bytes=100, snapshot_bytes=50, margin=5) == 165
    assert space_needed(download_remaining=-3, slot_bytes=1, snapshot_bytes=0, margin=0) == 1


versions = st.from_regex(r"\A[1-9]\.[0-9]\.[0-9]\Z")
trials = st.builds(
    Trial,
    version=versions,
    previous=versions,
    started=st.integers(0, 2**40),
    deadline=st.integers(0, 2**40),
    boots=st.integers(0, 10),
    max_boots=st.integers(1, 10),
)
journals = st.builds(RollbackJournal, versions, versions, st.text(max_size=20), st.text(max_size=20))
states = st.builds(
    OtaState,
    trial=st.none() | trials,
    rollback=st.none() | journals,
    committed=st.none() | versions,
    rolled_back_from=st.none() | versions,
)


@given(states)
def test_state_record_round_trips(state: OtaState) -> None:
    assert state_from_json(state_to_json(state)) == state


@given(states, st.none() | versions, st.none() | versions)
def test_reconcile_is_idempotent(state: OtaState, current: str | None, previous: str | None) -> None:
    links = Links(current, previous)
    first = reconcile(state, links)
    if first.finish_rollback:
        return
    after = Links(current, first.set_previous if first.set_previous is not None else previous)
    second = reconcile(first.state, after)
    assert second.state == first.state
    assert second.set_previous is None
