"""The bundle archive: a deterministic ``tar`` compressed with zstandard, and its checks (file I/O shell).

Determinism rules: members sorted by path; directories, then their contents; mtime = SOURCE_DATE_EPOCH;
uid/gid 0 with empty owner names; modes normalised to 0755 (directories and anything executable) or
0644; PAX format with integer mtimes (no extended headers unless a name needs one); one zstd frame,
single-threaded, with a content checksum. Only regular files, directories and relative symlinks that stay
inside the bundle are accepted.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, cast

import zstandard

from appliance.artifact.errors import ArtifactRejected, RejectReason
from appliance.artifact.manifest import ArchiveEntry, FileEntry, Manifest

__all__ = [
    "BundleListing",
    "check_archive_contents",
    "extract_archive",
    "hash_file",
    "scan_bundle",
    "write_archive",
]

CHUNK = 1 << 20
ZSTD_LEVEL = 12


class BundleListing:
    """What :func:`scan_bundle` found: archive member names (``<top>/...``) in archive order."""

    __slots__ = ("dirs", "files", "symlinks")

    def __init__(self) -> None:
        self.dirs: list[str] = []
        self.files: list[FileEntry] = []
        self.symlinks: list[tuple[str, str]] = []


def hash_file(path: str | os.PathLike[str]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _mode_of(st: os.stat_result) -> int:
    return 0o755 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o644


def _walk(root: Path, top: str) -> Iterator[tuple[str, Path]]:
    yield top, root
    for name in sorted(os.listdir(root)):
        path = root / name
        rel = f"{top}/{name}"
        if path.is_dir() and not path.is_symlink():
            yield from _walk(path, rel)
        else:
            yield rel, path


def _link_stays_inside(member: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    parts = list(PurePosixPath(member).parent.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            if len(parts) <= 1:
                return False
            parts.pop()
        elif part != ".":
            parts.append(part)
    return True


def scan_bundle(root: str | os.PathLike[str], top: str | None = None) -> BundleListing:
    """List and hash a bundle directory; the archive's top directory is ``top`` (default: its name)."""
    base = Path(root)
    listing = BundleListing()
    for rel, path in _walk(base, top or base.name):
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            listing.dirs.append(rel)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            if not _link_stays_inside(rel, target):
                raise ArtifactRejected(f"symlink leaves the bundle: {rel} -> {target}")
            listing.symlinks.append((rel, target))
        elif stat.S_ISREG(st.st_mode):
            size, sha = hash_file(path)
            listing.files.append(FileEntry(path=rel, size=size, sha256=sha, mode=_mode_of(st)))
        else:
            raise ArtifactRejected(f"not a regular file, directory or symlink: {rel}")
    listing.files.sort(key=lambda f: f.path)
    listing.symlinks.sort()
    return listing


def _info(name: str, kind: bytes, mode: int, mtime: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.size = size
    info.linkname = link
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what zstd writes, so the archive is hashed in the same pass."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = bytes(data)
        self._out.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)


def write_archive(
    root: str | os.PathLike[str],
    listing: BundleListing,
    out_path: str | os.PathLike[str],
    *,
    mtime: int,
    level: int = ZSTD_LEVEL,
) -> ArchiveEntry:
    """Write ``<out_path>`` from a scanned bundle; returns its size and sha256."""
    base = Path(root)
    top = listing.dirs[0]
    files = {f.path: f for f in listing.files}
    links = dict(listing.symlinks)
    names = sorted([*listing.dirs, *files, *links])
    tmp = Path(f"{out_path}.part")
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=0)
    with open(tmp, "wb") as raw:
        sink = _HashingWriter(raw)
        with (
            cctx.stream_writer(cast("IO[bytes]", sink), closefd=False) as zfh,
            tarfile.open(fileobj=zfh, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in names:
                rel = name[len(top) + 1 :]
                if name in files:
                    entry = files[name]
                    info = _info(name, tarfile.REGTYPE, entry.mode, mtime, size=entry.size)
                    with open(base / rel, "rb") as f:
                        tar.addfile(info, f)
                elif name in links:
                    tar.addfile(_info(name, tarfile.SYMTYPE, 0o777, mtime, link=links[name]))
                else:
                    tar.addfile(_info(name, tarfile.DIRTYPE, 0o755, mtime))
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, out_path)
    return ArchiveEntry(filename=Path(out_path).name, size=sink.size, sha256=sink.digest.hexdigest())


def _members(archive_path: str | os.PathLike[str]) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    dctx = zstandard.ZstdDecompressor()
    with open(archive_path, "rb") as raw, dctx.stream_reader(raw) as zfh:
        try:
            with tarfile.open(fileobj=zfh, mode="r|") as tar:
                for info in tar:
                    yield info, tar.extractfile(info) if info.isreg() else None
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            raise ArtifactRejected(
                f"archive is corrupt: {exc}", reason=RejectReason.ARCHIVE_MISMATCH
            ) from exc


def check_archive_contents(manifest: Manifest, archive_path: str | os.PathLike[str]) -> int:
    """Every member matches the manifest (hash, size, mode, link target) and nothing is missing or extra.

    Returns the number of files checked. Call after the archive's own sha256 has been checked; this is the
    defence in depth that makes the per-file hashes in the manifest mean something.
    """
    want = {f.path: f for f in manifest.files}
    links = dict(manifest.symlinks)
    seen: set[str] = set()
    for info, fh in _members(archive_path):
        name = info.name
        if name in seen:
            raise _mismatch(f"duplicate member {name}")
        seen.add(name)
        if info.isdir():
            continue
        if info.issym():
            if links.get(name) != info.linkname:
                raise _mismatch(f"unexpected symlink {name}")
            continue
        entry = want.get(name)
        if entry is None or fh is None or not info.isreg():
            raise _mismatch(f"unexpected member {name}")
        digest = hashlib.sha256()
        size = 0
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if size != entry.size or digest.hexdigest() != entry.sha256 or info.mode != entry.mode:
            raise _mismatch(f"{name} does not match the manifest")
    missing = (set(want) | set(links)) - seen
    if missing:
        raise _mismatch(f"{len(missing)} files missing from the archive, e.g. {min(missing)}")
    return len(want)


def extract_archive(
    manifest: Manifest, archive_path: str | os.PathLike[str], dest: str | os.PathLike[str]
) -> None:
    """Unpack a verified archive into an empty ``dest`` with tarfile's ``data`` filter (no escapes)."""
    check_archive_contents(manifest, archive_path)
    os.makedirs(dest, exist_ok=True)
    dctx = zstandard.ZstdDecompressor()
    with (
        open(archive_path, "rb") as raw,
        dctx.stream_reader(raw) as zfh,
        tarfile.open(fileobj=zfh, mode="r|") as tar,
    ):
        tar.extractall(dest, filter="data")


def _mismatch(message: str) -> ArtifactRejected:
    return ArtifactRejected(message, reason=RejectReason.FILE_MISMATCH)
