"""Append-only quarantine ledger: JSON lines, hash-chained, fsynced, rotated by size into zstd segments.

Rules:
- One entry is one line, written with a single ``write`` on an ``O_APPEND`` descriptor while holding an
  exclusive ``fcntl.flock`` on a side lock file, then fsynced. Concurrent writers (threads or processes)
  therefore never interleave.
- Each entry carries ``prev_sha256`` (the previous entry's ``sha256``) and its own ``sha256`` over its canonical
  JSON without that field: edits and truncation show up in :func:`verify_chain`. The chain continues across
  rotated segments.
- A crash can leave a torn last line. Readers skip a line that does not parse, and the next writer starts on a
  fresh line, so a torn line never breaks reading.
- Rotation happens under the same lock: the live file is renamed to ``<stem>.<seq>.jsonl``, compressed to
  ``.zst`` with zstandard, and the oldest segments beyond ``keep`` are removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["QuarantineLedger", "read_entries", "verify_chain"]

_GENESIS = "0" * 64
_TAIL = 65536
_SEGMENT = re.compile(r"\.(\d{6})\.jsonl(?:\.zst)?$")


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class QuarantineLedger:
    """Writes ledger entries to ``path``; safe for several writers at once. Callable, so it can be handed to
    :class:`~appliance.defender.engine.Defender` as its ledger sink."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 4 * 1024 * 1024,
        keep: int = 8,
        zstd_level: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.max_bytes = max_bytes
        self.keep = keep
        self.zstd_level = zstd_level
        self._clock = clock

    def __call__(self, entry: dict[str, Any]) -> dict[str, Any]:
        return self.append(entry)

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one entry and return it as written (with ``ts``, ``prev_sha256`` and ``sha256``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                prev, torn = self._head()
                record = {k: v for k, v in entry.items() if k not in ("sha256", "prev_sha256")}
                record.setdefault("ts", round(self._clock(), 6))
                record["prev_sha256"] = prev
                record["sha256"] = hashlib.sha256(_canonical(record)).hexdigest()
                line = _canonical(record) + b"\n"
                if torn:
                    line = b"\n" + line
                os.write(fd, line)
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size >= self.max_bytes:
                self._rotate()
            return record
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)

    def _head(self) -> tuple[str, bool]:
        """The last entry's hash (from the live file or the newest segment) and whether the file ends torn."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                if size:
                    fh.seek(max(0, size - _TAIL))
                    tail = fh.read()
                    torn = not tail.endswith(b"\n")
                    for raw in reversed(tail.splitlines()):
                        try:
                            return str(json.loads(raw)["sha256"]), torn
                        except (ValueError, KeyError, TypeError):
                            continue
                    return _GENESIS, torn
        except FileNotFoundError:
            pass
        segments = self.segments()
        if segments:
            last = _GENESIS
            for entry in _iter_file(segments[-1]):
                last = str(entry.get("sha256", last))
            return last, False
        return _GENESIS, False

    def segments(self) -> list[Path]:
        """Rotated segments, oldest first."""
        stem = self.path.name.removesuffix(".jsonl")
        found = []
        for candidate in self.path.parent.glob(f"{stem}.*.jsonl*"):
            m = _SEGMENT.search(candidate.name)
            if m and candidate.name.startswith(stem + "."):
                found.append((int(m.group(1)), candidate))
        return [p for _, p in sorted(found)]

    def _rotate(self) -> None:
        import zstandard

        segments = self.segments()
        seq = 1
        if segments:
            m = _SEGMENT.search(segments[-1].name)
            seq = int(m.group(1)) + 1 if m else len(segments) + 1
        stem = self.path.name.removesuffix(".jsonl")
        plain = self.path.with_name(f"{stem}.{seq:06d}.jsonl")
        os.replace(self.path, plain)
        compressed = plain.with_name(plain.name + ".zst")
        tmp = compressed.with_name(compressed.name + ".tmp")
        cctx = zstandard.ZstdCompressor(level=self.zstd_level)
        with plain.open("rb") as src, tmp.open("wb") as dst:
            cctx.copy_stream(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, compressed)
        plain.unlink()
        for old in self.segments()[: max(0, len(self.segments()) - self.keep)]:
            old.unlink(missing_ok=True)


def _iter_file(path: Path) -> Iterator[dict[str, Any]]:
    if path.name.endswith(".zst"):
        import zstandard

        try:
            with path.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as reader:
                data = reader.read()
        except FileNotFoundError:
            return
    else:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a torn line from a crash: skip it
        if isinstance(entry, dict):
            yield entry


def read_entries(path: str | os.PathLike[str], *, include_rotated: bool = True) -> Iterator[dict[str, Any]]:
    """Every readable entry, oldest first (rotated segments, then the live file)."""
    ledger = QuarantineLedger(path)
    if include_rotated:
        for segment in ledger.segments():
            yield from _iter_file(segment)
    yield from _iter_file(ledger.path)


def verify_chain(path: str | os.PathLike[str]) -> list[str]:
    """Check hashes and links over all segments. Returns a list of problems (empty when intact)."""
    problems: list[str] = []
    prev: str | None = None
    for index, entry in enumerate(read_entries(path)):
        body = {k: v for k, v in entry.items() if k != "sha256"}
        digest = hashlib.sha256(_canonical(body)).hexdigest()
        if digest != entry.get("sha256"):
            problems.append(f"entry {index}: content does not match its sha256")
        if prev is not None and entry.get("prev_sha256") != prev:
            problems.append(f"entry {index}: chain broken (prev_sha256 does not match)")
        prev = str(entry.get("sha256"))
    return problems
