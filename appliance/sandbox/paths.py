"""Host-side path I/O for the mount policy: resolve before the check, re-verify before the run.

:func:`resolve_path` is the :data:`~appliance.sandbox.policy.Resolver` the policy gets. The policy then
mounts the *resolved* real path, so a symlink swapped at the requested path after the check changes
nothing. :func:`pin_mounts` closes the remaining window: it walks every bind source component by component
with ``O_NOFOLLOW`` (a component replaced by a symlink after the check fails the walk), checks the final
directory is the same inode that was checked, and keeps the ``O_PATH`` descriptors open for the run so
the inode cannot be recycled under us.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator

from appliance.sandbox.policy import (
    DEFAULT_BLOCKED_PATTERNS,
    Mount,
    MountKind,
    MountRefused,
    ResolvedPath,
    blocked_reason,
)

__all__ = ["identity", "pin_mounts", "resolve_path"]


def resolve_path(path: str, patterns: tuple[str, ...] = DEFAULT_BLOCKED_PATTERNS) -> ResolvedPath:
    """``realpath`` (follows every symlink and ``..``), existence, and secret-looking children."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return ResolvedPath(real=real, exists=False, is_dir=False)
    is_dir = stat.S_ISDIR(st.st_mode)
    children: list[tuple[str, bool]] = []
    if is_dir:
        try:
            with os.scandir(real) as it:
                children.extend(
                    (entry.name, entry.is_dir(follow_symlinks=False))
                    for entry in it
                    if blocked_reason(entry.name, patterns, ()) is not None
                )
        except OSError:
            pass
    return ResolvedPath(real=real, exists=True, is_dir=is_dir, secret_children=tuple(sorted(children)))


def _walk_nofollow(path: str) -> int:
    """Open ``path`` with ``O_PATH|O_NOFOLLOW`` at every component; raise if any is a symlink."""
    parts = [p for p in path.split("/") if p]
    if any(part in (".", "..") for part in parts):
        raise MountRefused(f"mount source is not normalised: {path}")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY)
    for part in parts:
        try:
            nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW, dir_fd=fd)
            is_link = stat.S_ISLNK(os.fstat(nxt).st_mode)
        except OSError as exc:
            os.close(fd)
            raise MountRefused(f"mount source vanished after the check: {path}") from exc
        os.close(fd)
        fd = nxt
        if is_link:
            os.close(fd)
            raise MountRefused(f"mount source changed to a symlink after the check: {path}")
    return fd


@contextlib.contextmanager
def pin_mounts(mounts: Iterable[Mount], checked: dict[str, tuple[int, int]] | None = None) -> Iterator[None]:
    """Re-verify bind sources right before the engine sees them; hold them open for the run.

    ``checked`` maps a source to the ``(st_dev, st_ino)`` seen at check time (when the caller recorded it).
    Raises :class:`MountRefused` when a source became a symlink, vanished or is another inode.
    """
    fds: list[int] = []
    try:
        for mount in mounts:
            if mount.kind is not MountKind.BIND:
                continue
            fd = _walk_nofollow(mount.source)
            fds.append(fd)
            st = os.fstat(fd)
            if (
                checked is not None
                and mount.source in checked
                and checked[mount.source]
                != (
                    st.st_dev,
                    st.st_ino,
                )
            ):
                raise MountRefused(f"mount source was replaced after the check: {mount.source}")
        yield
    finally:
        for fd in fds:
            os.close(fd)


def identity(path: str) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of ``path`` without following a final symlink."""
    st = os.lstat(path)
    return st.st_dev, st.st_ino
