"""The updater shell: update, commit check, boot check and rollback, driving :mod:`appliance.ota.state`.

Every public method takes the root lock, first repairs whatever a crash left (:meth:`Updater.recover`),
then acts. Nothing under the root changes before the artifact's signature, expiry, version rules, free
space and every hash have been checked (local sources are verified in place; remote archives are staged
under ``staging/``, outside the slots).
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from appliance.artifact import ArtifactRejected
from appliance.artifact.archive import check_archive_contents, extract_archive, hash_file
from appliance.artifact.keys import TrustSet
from appliance.artifact.manifest import Manifest, format_time
from appliance.artifact.policy import UpdateContext, check_archive, check_manifest
from appliance.errors import ApplianceError
from appliance.log import get_logger
from appliance.ota import history
from appliance.ota.errors import InsufficientSpace, NothingToRollBack, TrialFailed, UpdateBusy
from appliance.ota.fetch import Located, Progress, download_archive, locate
from appliance.ota.slots import Disk, SlotLayout, hold_lock
from appliance.ota.snapshot import DB_NAME, database_size, restore_snapshot, take_snapshot
from appliance.ota.state import (
    BootAction,
    CommitAction,
    OtaState,
    RollbackJournal,
    Step,
    Trial,
    decide_boot,
    decide_commit,
    reconcile,
    space_needed,
)
from appliance.ota.trial import HealthProbe, run_self_check, run_service_command

__all__ = ["Outcome", "Updater", "UpdaterConfig"]

log = get_logger("appliance.ota")
MARGIN_BYTES = 16 * 1024 * 1024
ROLLBACK_CRASH_POINT = (
    "rollback"  # OTA_TEST_CRASH_AT=rollback: die between the database restore and the switch
)


@attrs.frozen
class UpdaterConfig:
    root: Path
    data_dir: Path
    trust: TrustSet
    restart_command: list[str] | None = None
    stop_command: list[str] | None = None
    health_url: str = "http://127.0.0.1:18789/ready"
    trial_deadline_s: int = 300
    max_boots: int = 3
    arch: str | None = attrs.field(factory=platform.machine)
    poll_interval_s: float = 0.25


@attrs.frozen
class Outcome:
    """What a command did, for the one-line CLI message and ``--json``."""

    action: str
    message: str
    version: str | None = None
    previous: str | None = None
    details: dict[str, Any] = attrs.field(factory=dict)


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


class Updater:
    def __init__(
        self,
        config: UpdaterConfig,
        *,
        disk: Disk | None = None,
        clock: Callable[[], float] = time.time,
        free_bytes: Callable[[Path], int] = _free_bytes,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.layout = SlotLayout(config.root)
        self.disk = disk or Disk.from_env()
        self._clock = clock
        self._free_bytes = free_bytes
        self._progress = progress
        self._sleep = sleep
        self.probe = HealthProbe(config.health_url, config.data_dir)

    # -- helpers -------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    @property
    def db_path(self) -> Path:
        return self.config.data_dir / DB_NAME

    def _record(self, event: str, **fields: Any) -> None:
        history.record_event(self.layout.history_file, event, self._now(), **fields)

    @contextlib.contextmanager
    def _locked(self) -> Any:
        self.layout.ensure(self.disk)
        with hold_lock(self.layout):
            self.recover()
            yield

    # -- recovery --------------------------------------------------------------------------------

    def recover(self) -> str:
        """Repair a crash at any instant (idempotent); returns what was repaired ('' when nothing)."""
        self.layout.sweep_staging()
        state = self.layout.read_state()
        fix = reconcile(state, self.layout.links())
        if fix.finish_rollback and state.rollback is not None:
            self._finish_rollback(state.rollback)
        elif fix.set_previous is not None:
            self.layout.point(self.disk, self.layout.previous, fix.set_previous)
        elif fix.state != state:
            self.layout.write_state(self.disk, fix.state)
        if fix.note:
            log.info("ota_recovered", note=fix.note)
        return fix.note

    # -- update ----------------------------------------------------------------------------------

    def update(self, source: str, *, wait_for_commit: bool = True) -> Outcome:
        """Verify, unpack, self-check, snapshot, switch, restart and (by default) wait for the commit.

        Raises ArtifactRejected (nothing changed), SelfCheckFailed, InsufficientSpace, FetchFailed,
        UpdateBusy, or TrialFailed (the new version was unhealthy and has been rolled back).
        """
        try:
            return self._update(source, wait_for_commit=wait_for_commit)
        except TrialFailed:
            raise  # already recorded as a rollback
        except ApplianceError as exc:
            log.warning(
                "update_refused",
                source=source,
                error=type(exc).__name__,
                exit_code=int(exc.exit_code),
                reason=(exc.details or {}).get("reason"),
                message=exc.message,
            )
            raise

    def _update(self, source: str, *, wait_for_commit: bool) -> Outcome:
        with self._locked():
            state = self.layout.read_state()
            links = self.layout.links()
            if state.trial is not None:
                raise UpdateBusy(
                    f"{state.trial.version} is still in trial: run `appliance commit` or `appliance rollback`"
                )
            located = locate(source)
            manifest = check_manifest(
                self.config.trust,
                located.manifest_bytes,
                located.signature_text,
                UpdateContext(now=self._now(), installed_version=links.current, arch=self.config.arch),
            )
            if links.current == manifest.version:
                return Outcome("none", f"{manifest.version} is already current", version=manifest.version)
            archive = self._fetch(located, manifest)
            self.disk.crash_point(Step.VERIFY)
            try:
                size, sha = hash_file(archive)
                check_archive(manifest, size, sha)
                check_archive_contents(manifest, archive)
            except ArtifactRejected:
                if located.remote:
                    archive.unlink(missing_ok=True)  # a bad download must not be "resumed" forever
                raise
            log.info("ota_verified", version=manifest.version, archive_sha256=sha)
            self._unpack(manifest, archive, located)
            run_self_check(self.layout.entry_point(manifest.version))
            self.disk.crash_point(Step.SELFCHECK)
            if links.current is None:
                return self._first_install(manifest)
            return self._switch_and_trial(manifest, links.current, wait_for_commit)

    def _fetch(self, located: Located, manifest: Manifest) -> Path:
        filename = manifest.archive.filename
        staged = self.layout.staging / filename
        remaining = (
            0
            if not located.remote
            else manifest.archive.size - (staged.stat().st_size if staged.exists() else 0)
        )
        needed = space_needed(
            download_remaining=remaining,
            slot_bytes=manifest.total_size,
            snapshot_bytes=database_size(self.db_path),
            margin=MARGIN_BYTES,
        )
        free = self._free_bytes(self.layout.root)
        if free < needed:
            raise InsufficientSpace(
                f"not enough disk on {self.layout.root}: need {_mib(needed)} "
                f"(new slot + database snapshot), {_mib(free)} free",
                details={"needed_bytes": needed, "free_bytes": free},
            )
        if not located.remote:
            self.disk.crash_point(Step.DOWNLOAD)
            return Path(located.archive_location(filename))
        half = manifest.archive.size // 2

        def on_chunk(done: int) -> None:
            if done >= half:
                self.disk.crash_point(Step.DOWNLOAD)

        download_archive(
            located.archive_location(filename),
            staged,
            manifest.archive.size,
            progress=self._progress,
            on_chunk=on_chunk if self.disk.crash_step == Step.DOWNLOAD else None,
        )
        return staged

    def _unpack(self, manifest: Manifest, archive: Path, located: Located) -> None:
        version = manifest.version
        work = self.layout.staging / f"unpack-{version}"
        shutil.rmtree(work, ignore_errors=True)
        extract_archive(manifest, archive, work)
        meta = work / "meta"
        meta.mkdir()
        (meta / "manifest.json").write_bytes(located.manifest_bytes)
        (meta / "manifest.json.minisig").write_text(located.signature_text, encoding="utf-8")
        self.disk.fsync_tree(work)
        slot = self.layout.slot(version)
        if slot.exists():  # a stale, never-current copy from an earlier attempt
            shutil.rmtree(slot)
        meta_dir = self.layout.releases / ".meta"
        meta_dir.mkdir(exist_ok=True)
        for name in ("manifest.json", "manifest.json.minisig"):
            self.disk.rename(meta / name, meta_dir / f"{version}.{name}", sync_dir=False)
        self.disk.rename(work / manifest.name, slot, sync_dir=False)
        self.disk.crash_point(Step.UNPACK)
        self.disk.fsync_dir(meta_dir)
        self.disk.fsync_dir(self.layout.releases)
        shutil.rmtree(work, ignore_errors=True)
        if located.remote:
            (self.layout.staging / manifest.archive.filename).unlink(missing_ok=True)

    def _first_install(self, manifest: Manifest) -> Outcome:
        version = manifest.version
        self.layout.point(self.disk, self.layout.current, version)
        self.disk.crash_point(Step.SWITCH)
        self.layout.write_state(self.disk, OtaState(committed=version))
        self._record("update_installed", version=version)
        return Outcome("installed", f"installed {version} (first install, committed)", version=version)

    def _switch_and_trial(self, manifest: Manifest, old: str, wait_for_commit: bool) -> Outcome:
        version = manifest.version
        now = self._now()
        took = take_snapshot(self.disk, self.db_path, self.layout.snapshot_for(old))
        if not took:
            self.layout.snapshot_for(old).unlink(missing_ok=True)
        trial = Trial(
            version=version,
            previous=old,
            started=now,
            deadline=now + self.config.trial_deadline_s,
            max_boots=self.config.max_boots,
        )
        state = self.layout.read_state()
        self.layout.write_state(self.disk, attrs.evolve(state, trial=trial, rolled_back_from=None))
        self.disk.point_symlink(self.layout.current, f"releases/{version}", sync_dir=False)
        self.disk.crash_point(Step.SWITCH)
        self.disk.fsync_dir(self.layout.root)
        self.layout.point(self.disk, self.layout.previous, old)
        self._record(
            "update_switched",
            version=version,
            previous=old,
            snapshot=took,
            deadline=format_time(trial.deadline),
        )
        self.disk.crash_point(Step.RESTART)
        restarted = run_service_command(self.config.restart_command, "restart")
        if not wait_for_commit:
            how = "restarted" if restarted else "restart the service to start it"
            return Outcome(
                "trial",
                f"{version} is current in trial ({how}); `appliance commit` commits it",
                version=version,
                previous=old,
            )
        return self._commit_loop(wait=True)

    # -- commit ----------------------------------------------------------------------------------

    def commit(self, *, wait: bool = False) -> Outcome:
        """The trial check: commit when healthy, revert when failed or out of time, else say 'not yet'."""
        with self._locked():
            return self._commit_loop(wait=wait)

    def _commit_loop(self, *, wait: bool) -> Outcome:
        while True:
            state = self.layout.read_state()
            trial = state.trial
            if trial is None:
                current = self.layout.links().current
                return Outcome("none", f"nothing to commit: {current} is not in trial", version=current)
            healthy = self.probe.check(self.layout.entry_point(trial.version))
            action, reason = decide_commit(state, self._now(), healthy)
            if action is CommitAction.COMMIT:
                self.disk.crash_point(Step.COMMIT)
                self._commit(state, trial)
                return Outcome("committed", f"committed {trial.version}", trial.version, trial.previous)
            if action is CommitAction.ROLLBACK:
                out = self._rollback(reason, automatic=True, service=True)
                raise TrialFailed(f"{reason}; {out.message}", details={"version": trial.version})
            if not wait:
                return Outcome(
                    "wait", f"{reason}; trial deadline {format_time(trial.deadline)}", trial.version
                )
            self._sleep(self.config.poll_interval_s)

    def _commit(self, state: OtaState, trial: Trial) -> None:
        self.layout.write_state(self.disk, OtaState(committed=trial.version))
        self._record("update_committed", version=trial.version, previous=trial.previous, boots=trial.boots)
        self._prune(keep={trial.version, trial.previous})

    def _prune(self, keep: set[str]) -> None:
        """Old slots and their snapshots go; aside databases are never deleted."""
        for version in self.layout.installed_versions():
            if version not in keep:
                shutil.rmtree(self.layout.slot(version), ignore_errors=True)
                for name in ("manifest.json", "manifest.json.minisig"):
                    (self.layout.releases / ".meta" / f"{version}.{name}").unlink(missing_ok=True)
        for snap in self.layout.snapshots.glob("*.sqlite3"):
            if snap.name[: -len(".sqlite3")] not in keep:
                snap.unlink()
        self.disk.fsync_dir(self.layout.releases)

    # -- boot check --------------------------------------------------------------------------------

    def boot_check(self) -> Outcome:
        """Before the service starts (systemd ExecStartPre): count a trial boot or revert.

        When an updater holds the lock it is the one restarting us and it supervises the trial itself,
        so this start is not counted (and must not fail: ExecStartPre failing would stop the start).
        """
        try:
            return self._boot_check()
        except UpdateBusy:
            return Outcome("none", "an update is in progress and supervises this start; boot not counted")

    def _boot_check(self) -> Outcome:
        with self._locked():
            state = self.layout.read_state()
            new_state, action, reason = decide_boot(state, self._now())
            if action is BootAction.ROLLBACK:
                out = self._rollback(reason, automatic=True, service=False)
                return attrs.evolve(out, message=f"{reason}; {out.message}")
            if action is BootAction.TRIAL and new_state.trial is not None:
                self.layout.write_state(self.disk, new_state)
                trial = new_state.trial
                return Outcome(
                    "trial",
                    f"{trial.version} boots in trial ({trial.boots}/{trial.max_boots})",
                    trial.version,
                    trial.previous,
                )
            return Outcome("none", f"{self.layout.links().current} starts", self.layout.links().current)

    # -- rollback ----------------------------------------------------------------------------------

    def rollback(self, reason: str = "operator request") -> Outcome:
        with self._locked():
            return self._rollback(reason, automatic=False, service=True)

    def _rollback(self, reason: str, *, automatic: bool, service: bool) -> Outcome:
        state = self.layout.read_state()
        links = self.layout.links()
        if links.previous is None or links.current is None:
            if state.rolled_back_from and links.current:
                return Outcome(
                    "none",
                    f"already rolled back: {links.current} is current ({state.rolled_back_from} was left)",
                    links.current,
                )
            raise NothingToRollBack(f"no previous version to roll back to under {self.layout.root}")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._now()))
        journal = RollbackJournal(
            from_version=links.current,
            to_version=links.previous,
            reason=("automatic: " if automatic else "") + reason,
            aside=f"aside/{stamp}-from-{links.current}",
        )
        self.layout.write_state(self.disk, attrs.evolve(state, rollback=journal))
        if service:
            run_service_command(self.config.stop_command, "stop")
        self._finish_rollback(journal)
        restarted = service and run_service_command(self.config.restart_command, "restart")
        tail = " and restarted" if restarted else ""
        return Outcome(
            "rolled_back",
            f"rolled back from {journal.from_version} to {journal.to_version}{tail}; "
            f"newer database kept in {self.layout.root / journal.aside}",
            journal.to_version,
            journal.from_version,
            {"aside": str(self.layout.root / journal.aside), "reason": journal.reason},
        )

    def _finish_rollback(self, journal: RollbackJournal) -> None:
        """Idempotent: aside the newer DB, restore the snapshot, flip ``current``, drop ``previous``."""
        snapshot = self.layout.snapshot_for(journal.to_version)
        restore_snapshot(
            self.disk, snapshot if snapshot.exists() else None, self.db_path, self.layout.root / journal.aside
        )
        self.disk.crash_point(ROLLBACK_CRASH_POINT)
        if self.layout.links().current != journal.to_version:
            self.layout.point(self.disk, self.layout.current, journal.to_version)
        self.disk.remove_link(self.layout.previous)
        self.layout.write_state(
            self.disk, OtaState(committed=journal.to_version, rolled_back_from=journal.from_version)
        )
        self._record(
            "rolled_back",
            version=journal.to_version,
            previous=journal.from_version,
            reason=journal.reason,
            aside=journal.aside,
        )

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``appliance slots`` shows (read-only: takes no lock and repairs nothing)."""
        from appliance.artifact import minisign

        state = self.layout.read_state()
        links = self.layout.links()
        slots = []
        for version in self.layout.installed_versions():
            sig_path = self.layout.releases / ".meta" / f"{version}.manifest.json.minisig"
            key_id = None
            with contextlib.suppress(Exception):
                key_id = minisign.decode_signature(sig_path.read_text()).key_id[::-1].hex().upper()
            slots.append(
                {
                    "version": version,
                    "role": "current"
                    if version == links.current
                    else "previous"
                    if version == links.previous
                    else "",
                    "size_bytes": self.layout.slot_size(version),
                    "signed_by": key_id,
                    "snapshot": self.layout.snapshot_for(version).exists(),
                }
            )
        return {
            "root": str(self.layout.root),
            "current": links.current,
            "previous": links.previous,
            "trial": attrs.asdict(state.trial) if state.trial else None,
            "committed": state.committed,
            "rolled_back_from": state.rolled_back_from,
            "slots": slots,
            "history": history.read_history(self.layout.history_file, limit=10),
        }


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"
