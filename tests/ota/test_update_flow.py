"""Update, commit, rollback and update again with two real signed artifacts, against a running serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ota.rig import V1, V2, Rig, build_bundle_release, copy_release, tree

pytestmark = pytest.mark.integration


def test_update_commit_rollback_update_again(rig: Rig) -> None:
    rig.install_first()
    assert rig.current() == V1
    assert rig.started_versions() == [V1]

    done = rig.ota("update", str(rig.artifacts.v2.manifest))
    assert done.returncode == 0, done.stderr
    assert f"committed {V2}" in done.stdout
    assert rig.current() == V2
    assert rig.started_versions()[-1] == V2
    status = rig.slots()
    assert (status["current"], status["previous"], status["trial"]) == (V2, V1, None)
    assert {s["version"] for s in status["slots"]} == {V1, V2}
    assert all(s["signed_by"] for s in status["slots"])
    rig.mark("v2-data")
    assert rig.marks() == ["v1-data", "v2-data"]

    done = rig.ota("rollback")
    assert done.returncode == 0, done.stderr
    assert f"rolled back from {V2} to {V1}" in done.stdout
    assert rig.current() == V1
    assert rig.started_versions()[-1] == V1
    assert rig.marks() == ["v1-data"]  # the snapshot that belongs to V1
    aside = list((rig.root / "aside").glob(f"*-from-{V2}/appliance.sqlite3"))
    assert len(aside) == 1
    assert rig.marks(aside[0]) == ["v1-data", "v2-data"]  # the newer database is kept, not deleted

    again = rig.ota("rollback")  # safe to run twice
    assert again.returncode == 0, again.stderr
    assert "already rolled back" in again.stdout
    assert rig.current() == V1

    done = rig.ota("update", str(rig.artifacts.v2.manifest))
    assert done.returncode == 0, done.stderr
    assert rig.current() == V2
    assert rig.marks() == ["v1-data"]
    events = [e["event"] for e in rig.slots()["history"]]
    assert events == [
        "update_installed",
        "update_switched",
        "update_committed",
        "rolled_back",
        "update_switched",
        "update_committed",
    ]


def test_failing_health_reverts_by_itself(rig: Rig) -> None:
    rig.install_first()
    done = rig.ota("update", str(rig.artifacts.v2_bad_health.manifest))
    assert done.returncode == 1, done.stderr
    assert "failed its health check" in done.stderr
    assert "rolled back from 1.2.0 to 1.0.0" in done.stderr
    assert rig.current() == V1
    assert rig.started_versions() == [V1, "1.2.0", V1]
    assert rig.marks() == ["v1-data"]
    status = rig.slots()
    assert status["trial"] is None
    assert status["history"][-1]["event"] == "rolled_back"
    assert status["history"][-1]["reason"].startswith("automatic:")


def _tamper(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("defect", ["signature", "hash", "expiry", "downgrade", "untrusted", "selfcheck"])
def test_bad_artifact_refused_before_anything_changes(rig: Rig, tmp_path: Path, defect: str) -> None:
    rig.install_first()
    bad_dir = tmp_path / "bad"
    if defect == "signature":
        files = copy_release(rig.artifacts.v2, bad_dir)
        doc = json.loads(files.manifest.read_bytes())
        doc["min_version"] = "0.0.1"
        files.manifest.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    elif defect == "hash":
        files = copy_release(rig.artifacts.v2, bad_dir)
        _tamper(files.archive)
    elif defect == "expiry":
        files = build_bundle_release(bad_dir, V2, created=1_600_000_000, valid_days=1)
    elif defect == "downgrade":
        files = rig.artifacts.v0
    elif defect == "untrusted":
        from appliance.artifact import minisign

        other = minisign.keypair_from_seed(b"otherkey", bytes(32))
        files = build_bundle_release(bad_dir, V2, key=other)
    else:
        files = build_bundle_release(bad_dir, V2, fail_selfcheck=True)
    before = tree(rig.root)
    db_before = rig.db.read_bytes()
    done = rig.ota("update", str(files.manifest))
    expected = {
        "signature": "signature",
        "hash": "does not match",
        "expiry": "expired",
        "downgrade": "below the minimum",
        "untrusted": "not trusted",
        "selfcheck": "self-check",
    }[defect]
    assert done.returncode == 65, (done.returncode, done.stderr)
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()[-1]) < 300
    after = tree(rig.root)
    if defect == "selfcheck":  # verified, unpacked, then refused: the unpacked slot is not current
        assert rig.current() == V1
        after = {k: v for k, v in after.items() if V2 not in k}
    assert after == before
    assert rig.db.read_bytes() == db_before
    assert rig.current() == V1


def test_http_repository_with_resume(rig: Rig) -> None:
    from appliance.testing.update_repo import UpdateRepo

    rig.install_first()
    files = rig.artifacts.v2
    with UpdateRepo(files.archive.parent, drop_after={files.archive.name: 50_000}) as repo:
        done = rig.ota("update", repo.url)
        assert done.returncode == 0, done.stderr
        ranges = [r for name, r in repo.requests if name == files.archive.name]
    assert ranges[0] is None
    assert ranges[1] == "bytes=50000-"
    assert "ota_download_resumed" in done.stderr
    assert "ota_download_progress" in done.stderr
    assert rig.current() == V2
    assert not list((rig.root / "staging").iterdir())
