"""The updater in-process (no service): disk check, boot counter, lock, local sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.artifact.keys import TrustSet
from appliance.ota import InsufficientSpace, NothingToRollBack, UpdateBusy
from appliance.ota.fetch import locate
from appliance.ota.slots import Disk, SlotLayout, hold_lock
from appliance.ota.updater import Updater, UpdaterConfig
from tests.ota.rig import V1, V2, Artifacts, make_key, public_line


def _updater(tmp_path: Path, **kw: object) -> Updater:
    config = UpdaterConfig(
        root=tmp_path / "root",
        data_dir=tmp_path / "data",
        trust=TrustSet.of([public_line(make_key())]),
        health_url="http://127.0.0.1:9/ready",  # nothing listens: "not healthy yet"
        trial_deadline_s=600,
        max_boots=2,
    )
    return Updater(config, disk=Disk(), **kw)  # type: ignore[arg-type]


def _mark(db: Path, label: str) -> None:
    from appliance.store import open_database

    with open_database(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS m (label TEXT)")
        conn.execute("INSERT INTO m VALUES (?)", (label,))


def _marks(db: Path) -> list[str]:
    from appliance.store import open_database

    with open_database(db) as conn:
        return [str(r[0]) for r in conn.execute("SELECT label FROM m ORDER BY rowid")]


def test_refuses_without_enough_disk_and_says_how_much(tmp_path: Path, artifacts: Artifacts) -> None:
    up = _updater(tmp_path, free_bytes=lambda _p: 1024)
    with pytest.raises(InsufficientSpace) as info:
        up.update(str(artifacts.v1.manifest))
    assert "need" in info.value.message
    assert "MiB" in info.value.message
    assert info.value.details is not None
    assert info.value.details["needed_bytes"] > 16 * 1024 * 1024
    assert info.value.exit_code == 74
    assert up.layout.links().current is None
    assert up.layout.installed_versions() == []


def test_boot_counter_reverts_a_trial_that_never_commits(tmp_path: Path, artifacts: Artifacts) -> None:
    up = _updater(tmp_path)
    up.update(str(artifacts.v1.manifest))
    _mark(up.db_path, "v1")
    out = up.update(str(artifacts.v2.manifest), wait_for_commit=False)
    assert out.action == "trial"
    _mark(up.db_path, "v2")
    assert up.commit().action == "wait"  # the gateway never answers
    assert up.boot_check().action == "trial"
    assert up.boot_check().action == "trial"
    out = up.boot_check()  # third boot of a 2-boot trial: crash loop -> revert before starting
    assert out.action == "rolled_back"
    assert "boots without commit" in out.message
    assert up.layout.links() == type(up.layout.links())(current=V1, previous=None)
    assert _marks(up.db_path) == ["v1"]
    with pytest.raises(UpdateBusy), hold_lock(up.layout), hold_lock(SlotLayout(up.layout.root)):
        pass


def test_rollback_with_nothing_to_go_back_to(tmp_path: Path, artifacts: Artifacts) -> None:
    up = _updater(tmp_path)
    up.update(str(artifacts.v1.manifest))
    with pytest.raises(NothingToRollBack):
        up.rollback()


def test_update_during_trial_is_refused(tmp_path: Path, artifacts: Artifacts) -> None:
    up = _updater(tmp_path)
    up.update(str(artifacts.v1.manifest))
    up.update(str(artifacts.v2.manifest), wait_for_commit=False)
    with pytest.raises(UpdateBusy, match="still in trial"):
        up.update(str(artifacts.v2.manifest))


def test_local_sources_directory_archive_and_manifest(artifacts: Artifacts, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for files in (artifacts.v1, artifacts.v2):
        for p in (files.archive, files.manifest, files.signature):
            (repo / p.name).write_bytes(p.read_bytes())
    assert b'"version":"1.1.0"' in locate(str(repo)).manifest_bytes  # highest version without LATEST
    assert locate(str(artifacts.v1.archive)).manifest_bytes == artifacts.v1.manifest.read_bytes()
    assert locate(str(artifacts.v2.archive.parent)).manifest_bytes == artifacts.v2.manifest.read_bytes()
    assert V2 in str(locate(str(artifacts.v2.manifest)).base)


def test_boot_check_during_an_update_is_not_counted(tmp_path: Path, artifacts: Artifacts) -> None:
    up = _updater(tmp_path)
    up.update(str(artifacts.v1.manifest))
    up.update(str(artifacts.v2.manifest), wait_for_commit=False)
    with hold_lock(SlotLayout(up.layout.root)):  # the updater restarting the service holds the lock
        out = up.boot_check()
    assert "not counted" in out.message
    state = up.layout.read_state()
    assert state.trial is not None
    assert state.trial.boots == 0


def test_progress_bar_on_a_tty_and_events_otherwise() -> None:
    import io

    from appliance.ota.fetch import Progress

    out = io.StringIO()
    bar = Progress(out, tty=True)
    bar.update(50, 100, name="a.tar.zst")
    bar.update(100, 100, name="a.tar.zst")
    assert "50%" in out.getvalue()
    assert out.getvalue().endswith("100% 0.0/0.0 MB\n")
    quiet = io.StringIO()
    Progress(quiet, tty=False).update(1, 100, name="a")
    assert quiet.getvalue() == ""  # events go to the JSON log, not to this stream
