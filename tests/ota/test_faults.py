"""Fault injection: kill -9 (and a simulated power cut) of the updater at every step.

After each crash we "reboot" (the service is stopped and started again through ``boot-check``, as
systemd's ExecStartPre would) and run the trial check; the appliance must then run a good version with a
consistent database, and a plain retry of the update must succeed (resuming what was left).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from appliance.ota import UPDATE_STEPS
from appliance.testing.process import wait_http_ok
from appliance.testing.update_repo import UpdateRepo
from tests.ota.rig import V1, V2, Artifacts, Rig

pytestmark = pytest.mark.integration


def _crash_and_recover(rig: Rig, source: str, crash_at: str) -> str:
    rig.install_first()
    done = rig.ota("update", source, env={"OTA_TEST_CRASH_AT": crash_at})
    assert done.returncode == -signal.SIGKILL, (crash_at, done.returncode, done.stderr[-2000:])
    rig.service("stop")  # the power goes out / the board reboots
    rig.service("restart")  # boot-check (repairs, counts the trial boot), then start `current`
    check = rig.ota("commit", "--wait")  # the trial check (a systemd timer on a device)
    assert check.returncode == 0, (crash_at, check.stderr[-2000:])
    current = rig.current()
    assert current in (V1, V2), crash_at
    assert rig.started_versions()[-1] == current, crash_at
    wait_http_ok(rig.port, timeout_s=20)
    assert rig.marks() == ["v1-data"], crash_at  # consistent (quick_check ok) and nothing lost
    status = rig.slots()
    assert status["trial"] is None, crash_at
    return str(current)


@pytest.mark.parametrize("mode", ["kill", "powercut"])
def test_crash_at_every_step_leaves_a_good_version(tmp_path: Path, artifacts: Artifacts, mode: str) -> None:
    outcomes: dict[str, str] = {}
    with UpdateRepo(artifacts.v2.archive.parent) as repo:
        for step in UPDATE_STEPS:
            rig = Rig(tmp_path / step, artifacts)
            try:
                crash_at = step if mode == "kill" else f"{step}:powercut"
                outcomes[step] = _crash_and_recover(rig, repo.url, crash_at)
                retry = rig.ota("update", repo.url)
                assert retry.returncode == 0, (step, retry.stderr[-2000:])
                assert rig.current() == V2, step
                assert rig.marks() == ["v1-data"], step
            finally:
                rig.service("stop")
    # before the switch the old version stays; from the switch on the new one is kept and commits
    assert outcomes["download"] == outcomes["verify"] == outcomes["unpack"] == V1
    assert outcomes["selfcheck"] == outcomes["snapshot"] == V1
    # killed right after `current` was renamed: the rename is on disk (kept, and committed); a power cut
    # there loses the un-fsynced rename, so the trial record is dropped and the old version stays
    assert outcomes["switch"] == (V2 if mode == "kill" else V1)
    assert outcomes["restart"] == outcomes["commit"] == V2


@pytest.mark.parametrize("mode", ["kill", "powercut"])
def test_crash_in_the_middle_of_a_rollback(rig: Rig, mode: str) -> None:
    rig.install_first()
    assert rig.ota("update", str(rig.artifacts.v2.manifest)).returncode == 0
    rig.mark("v2-data")
    crash_at = "rollback" if mode == "kill" else "rollback:powercut"
    done = rig.ota("rollback", env={"OTA_TEST_CRASH_AT": crash_at})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    rig.service("stop")
    rig.service("restart")  # boot-check finishes the journaled rollback before starting
    assert rig.current() == V1
    assert rig.started_versions()[-1] == V1
    assert rig.marks() == ["v1-data"]
    aside = list((rig.root / "aside").glob(f"*-from-{V2}/appliance.sqlite3"))
    assert len(aside) == 1
    assert rig.marks(aside[0]) == ["v1-data", "v2-data"]
    again = rig.ota("rollback")
    assert again.returncode == 0
    assert "already rolled back" in again.stdout
