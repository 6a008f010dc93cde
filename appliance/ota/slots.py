"""Slots on disk: ``releases/<version>/``, the ``current``/``previous`` symlinks and the state record.

Layout of an appliance root (``ota.root``)::

    releases/<version>/        one unpacked bundle per slot (``<slot>/appliance`` is the entry point)
    current -> releases/<v>    what the service runs (systemd: ExecStart=<root>/current/appliance serve)
    previous -> releases/<v>   where ``appliance rollback`` goes
    state.json                 trial / rollback journal (appliance.ota.state)
    history.jsonl              one line per update, commit and rollback
    snapshots/<version>.sqlite3   database as it was when <version> was left (restored on rollback)
    aside/<when>-from-<version>/  newer databases set aside by a rollback (never deleted by us)
    staging/                   downloads (resumable) and half-unpacked slots (swept on every run)

Durability rules: a file is written to ``<name>.part``, fsynced, renamed, and its directory fsynced; a
symlink is switched by creating ``<link>.new`` and renaming it over the link, then fsyncing the root.
Every mutation goes through :class:`Disk`, which also carries the fault-injection test switch
``OTA_TEST_CRASH_AT=<step>[:powercut]``: at that step the process SIGKILLs itself; with
``:powercut`` it first undoes every mutation not yet covered by an fsync, which is what a power cut
may lose.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from appliance.ota.errors import SlotsCorrupt, UpdateBusy
from appliance.ota.state import Links, OtaState, state_from_json, state_to_json

__all__ = ["CRASH_ENV", "Disk", "SlotLayout", "hold_lock"]

CRASH_ENV = "OTA_TEST_CRASH_AT"


class Disk:
    """Durable file operations with an undo list of what is not yet fsynced (for the power-cut switch)."""

    def __init__(self, crash_at: str | None = None) -> None:
        step, _, mode = (crash_at or "").partition(":")
        self.crash_step = step or None
        self.powercut = mode == "powercut"
        self._pending: list[tuple[Path, Callable[[], None]]] = []

    @classmethod
    def from_env(cls) -> Disk:
        return cls(os.environ.get(CRASH_ENV))

    def crash_point(self, step: str) -> None:
        """Test switch: die here (kill -9) if told to; with ``:powercut`` lose un-fsynced mutations first."""
        if self.crash_step != step:
            return
        if self.powercut:
            for _directory, undo in reversed(self._pending):
                with contextlib.suppress(OSError):
                    undo()
        os.kill(os.getpid(), signal.SIGKILL)

    def fsync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._pending = [(d, u) for d, u in self._pending if d != directory]

    def write_file(self, path: Path, data: bytes, *, sync_dir: bool = True) -> None:
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.rename(tmp, path, sync_dir=sync_dir)

    def rename(self, src: Path, dst: Path, *, sync_dir: bool = True) -> None:
        """Rename, remembering how to undo it until both directories are fsynced."""
        old = dst.with_name(dst.name + ".undo")
        had_old = dst.is_symlink() or dst.is_file()
        if had_old and self.crash_step is not None and self.powercut:
            # keep the old bytes reachable so a simulated power cut can put them back
            if dst.is_symlink():
                os.symlink(os.readlink(dst), old)
            else:
                os.link(dst, old)
        os.replace(src, dst)

        def undo() -> None:
            os.replace(dst, src)
            if os.path.lexists(old):
                os.replace(old, dst)

        self._pending.append((dst.parent, undo))
        if src.parent != dst.parent:
            self._pending.append((src.parent, lambda: None))
        if sync_dir:
            self.fsync_dir(dst.parent)
            if src.parent != dst.parent:
                self.fsync_dir(src.parent)
        if os.path.lexists(old) and sync_dir:
            os.unlink(old)

    def point_symlink(self, link: Path, target: str, *, sync_dir: bool = True) -> None:
        """Atomically (re)point ``link`` at ``target`` (relative) by renaming a fresh symlink over it."""
        tmp = link.with_name(link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        self.rename(tmp, link, sync_dir=sync_dir)

    def remove_link(self, link: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        self.fsync_dir(link.parent)

    def fsync_tree(self, top: Path) -> None:
        """fsync every file and directory under ``top`` (an unpacked slot), children before parents."""
        for dirpath, _dirnames, filenames in os.walk(top, topdown=False):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    continue
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self.fsync_dir(Path(dirpath))


class SlotLayout:
    """Paths of an appliance root and reading of its state (writing goes through :class:`Disk`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.releases = self.root / "releases"
        self.current = self.root / "current"
        self.previous = self.root / "previous"
        self.state_file = self.root / "state.json"
        self.history_file = self.root / "history.jsonl"
        self.snapshots = self.root / "snapshots"
        self.aside = self.root / "aside"
        self.staging = self.root / "staging"
        self.lock_file = self.root / "ota.lock"

    def ensure(self, disk: Disk) -> None:
        created = False
        private = (self.snapshots, self.aside)  # copies of the database: user data, owner only
        for directory in (self.root, self.releases, self.snapshots, self.aside, self.staging):
            if not directory.is_dir():
                directory.mkdir(mode=0o700 if directory in private else 0o755, parents=True, exist_ok=True)
                created = True
        if created:
            disk.fsync_dir(self.root)

    def slot(self, version: str) -> Path:
        return self.releases / version

    def snapshot_for(self, version: str) -> Path:
        return self.snapshots / f"{version}.sqlite3"

    def entry_point(self, version: str) -> Path:
        return self.slot(version) / "appliance"

    def _link_version(self, link: Path) -> str | None:
        if not os.path.lexists(link):
            return None
        target = os.readlink(link)
        parts = Path(target).parts
        if len(parts) != 2 or parts[0] != "releases":
            raise SlotsCorrupt(f"{link} points outside releases/: {target}")
        return parts[1]

    def links(self) -> Links:
        return Links(current=self._link_version(self.current), previous=self._link_version(self.previous))

    def point(self, disk: Disk, link: Path, version: str) -> None:
        disk.point_symlink(link, f"releases/{version}")

    def read_state(self) -> OtaState:
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return OtaState()
        except (OSError, ValueError) as exc:
            raise SlotsCorrupt(f"cannot read {self.state_file}: {exc}") from exc
        try:
            return state_from_json(raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise SlotsCorrupt(f"{self.state_file} is not a valid state record: {exc}") from exc

    def write_state(self, disk: Disk, state: OtaState) -> None:
        data = json.dumps(state_to_json(state), sort_keys=True, indent=1).encode() + b"\n"
        disk.write_file(self.state_file, data)

    def installed_versions(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith("."))

    def slot_size(self, version: str) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.slot(version)):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

    def sweep_staging(self) -> None:
        """Remove half-unpacked slots left by a crash; downloads stay for resume."""
        if not self.staging.is_dir():
            return
        for entry in self.staging.iterdir():
            if entry.name.startswith("unpack-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.snapshots.glob("*.part") if self.snapshots.is_dir() else ():
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def hold_lock(layout: SlotLayout) -> Iterator[None]:
    """One updater at a time per root (flock: released by the kernel when the holder dies)."""
    fd = os.open(layout.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise UpdateBusy(f"another update or rollback is running on {layout.root}") from exc
            raise
        yield
    finally:
        os.close(fd)
