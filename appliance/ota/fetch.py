"""Where an update comes from: a local artifact, a directory, or an HTTP(S) update repository.

A SOURCE is one of:
- a manifest file ``<name>-<version>-<arch>.manifest.json`` (signature ``.minisig`` and archive beside it);
- an archive ``....tar.zst`` (the manifest beside it, same stem);
- a directory or ``http(s)://`` base URL of an update repository: static files, with a ``LATEST`` file
  naming the manifest to take (a local directory without ``LATEST`` offers its highest version).

Rules: the small manifest and signature are read first so the caller can verify them before the archive
is fetched; local archives are verified in place (nothing is written); remote archives go to
``staging/`` and resume with ``Range`` after a dropped connection or a crash. httpx is imported lazily.
Progress: a bar on a TTY, ``ota_download_progress`` JSON log events otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs

from appliance.log import get_logger
from appliance.ota.errors import FetchFailed

__all__ = ["Located", "Progress", "download_archive", "locate"]

log = get_logger("appliance.ota")
LATEST = "LATEST"


@attrs.frozen
class Located:
    """The manifest and signature bytes, and where the archive is (a local path or a URL)."""

    source: str
    manifest_bytes: bytes
    signature_text: str
    base: str  # directory path or URL prefix (ending in "/") where the archive lives
    remote: bool

    def archive_location(self, filename: str) -> str:
        return self.base + filename if self.remote else str(Path(self.base) / filename)


class Progress:
    """Download progress: a redrawn bar on a TTY, a JSON log event every 10 % otherwise."""

    def __init__(self, stream: IO[str] | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._last_decile = -1

    def update(self, done: int, total: int, *, name: str) -> None:
        pct = 100 if total <= 0 else min(100, done * 100 // total)
        if self.tty:
            filled = pct * 30 // 100
            self.stream.write(
                f"\r{name[:32]:32} [{'#' * filled}{'.' * (30 - filled)}] {pct:3d}% "
                f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
            )
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
            return
        decile = pct // 10
        if decile != self._last_decile:
            self._last_decile = decile
            log.info("ota_download_progress", file=name, done_bytes=done, total_bytes=total, percent=pct)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FetchFailed(f"cannot read {path}: {exc.strerror or exc}") from exc


def _pick_in_dir(directory: Path) -> Path:
    latest = directory / LATEST
    if latest.exists():
        return directory / _read_local(latest).decode().strip()
    from appliance.artifact.manifest import parse_version

    best: tuple[tuple[int, ...], Path] | None = None
    for candidate in directory.glob("*.manifest.json"):
        try:
            version = parse_version(json.loads(candidate.read_bytes())["version"])
        except Exception:  # an unreadable file is simply not a candidate (verified later)
            continue
        if best is None or version > best[0]:
            best = (version, candidate)
    if best is None:
        raise FetchFailed(f"no *.manifest.json in {directory}")
    return best[1]


def locate(source: str, *, client: Any = None) -> Located:
    """Read the manifest and signature of SOURCE (see module docstring); the archive is not touched."""
    if _is_url(source):
        return _locate_remote(source, client)
    path = Path(source)
    if path.is_dir():
        path = _pick_in_dir(path)
    elif path.name.endswith(".tar.zst"):
        path = path.with_name(path.name[: -len(".tar.zst")] + ".manifest.json")
    manifest = _read_local(path)
    signature = _read_local(Path(f"{path}.minisig")).decode("utf-8", "replace")
    return Located(str(source), manifest, signature, str(path.parent), remote=False)


def _get(client: Any, url: str) -> bytes:
    import httpx

    try:
        resp = client.get(url)
    except httpx.HTTPError as exc:
        raise FetchFailed(f"cannot fetch {url}: {exc}") from exc
    if resp.status_code != 200:
        raise FetchFailed(f"cannot fetch {url}: HTTP {resp.status_code}")
    return bytes(resp.content)


def _locate_remote(source: str, client: Any) -> Located:
    import httpx

    own = client is None
    client = client or httpx.Client(timeout=30.0, follow_redirects=True)
    try:
        if source.endswith(".manifest.json"):
            manifest_url = source
        else:
            base = source if source.endswith("/") else source + "/"
            manifest_url = base + _get(client, base + LATEST).decode().strip()
        manifest = _get(client, manifest_url)
        signature = _get(client, manifest_url + ".minisig").decode("utf-8", "replace")
    finally:
        if own:
            client.close()
    return Located(source, manifest, signature, manifest_url.rsplit("/", 1)[0] + "/", remote=True)


def download_archive(
    url: str,
    dest: Path,
    size: int,
    *,
    progress: Progress | None = None,
    on_chunk: Callable[[int], None] | None = None,
    retries: int = 5,
    client: Any = None,
) -> None:
    """Fetch ``url`` into ``dest`` until it has ``size`` bytes, resuming with ``Range`` after a drop.

    Raises FetchFailed after ``retries`` dropped attempts in a row or on an HTTP error status. Bytes are
    fsynced after every attempt so a crash keeps what arrived. ``on_chunk(bytes_so_far)`` is the
    fault-injection hook.
    """
    import httpx

    own = client is None
    client = client or httpx.Client(timeout=30.0, follow_redirects=True)
    failures = 0
    try:
        while True:
            have = dest.stat().st_size if dest.exists() else 0
            if have > size:
                dest.unlink()
                have = 0
            if have == size:
                return
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with client.stream("GET", url, headers=headers) as resp:
                    if resp.status_code == 206 and resp.headers.get("content-range", "").startswith(
                        f"bytes {have}-"
                    ):
                        mode = "ab"
                    elif resp.status_code == 200:
                        mode, have = "wb", 0
                    else:
                        raise FetchFailed(f"cannot fetch {url}: HTTP {resp.status_code}")
                    if have:
                        log.info("ota_download_resumed", url=url, from_bytes=have, total_bytes=size)
                    with open(dest, mode) as f:
                        try:
                            for chunk in resp.iter_bytes():  # as it arrives: a drop keeps every byte received
                                f.write(chunk)
                                have += len(chunk)
                                if progress:
                                    progress.update(have, size, name=dest.name)
                                if on_chunk:
                                    f.flush()
                                    on_chunk(have)
                        finally:
                            f.flush()
                            os.fsync(f.fileno())
                failures = 0 if have >= size else failures + 1  # ended early without an error: a drop
            except httpx.TransportError as exc:
                failures += 1
                log.warning("ota_download_dropped", url=url, at_bytes=have, attempt=failures, error=str(exc))
                if failures > retries:
                    raise FetchFailed(f"download of {url} kept failing: {exc}") from exc
            if failures > retries:
                raise FetchFailed(f"download of {url} kept ending early")
    finally:
        if own:
            client.close()
