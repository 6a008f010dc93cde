"""Host integrity baseline: sha256 manifest of the runtime files, optionally Ed25519-signed, and its check.

Rules:
- ``lstat`` first and never follow symlinks: a symlink is recorded with its target, not hashed through.
  Files are opened with ``O_NOFOLLOW`` and the open descriptor is compared with the ``lstat`` result.
- The manifest is canonical JSON; the signature (when a key is configured) is a detached raw Ed25519 signature
  over those bytes in ``<manifest>.sig``. ``cryptography`` is imported only when signing or verifying.
- A check reports changed, missing and added files; it never re-baselines on its own. What a mismatch means is
  the caller's policy: ``refuse`` (raise :class:`IntegrityMismatch`, the service does not start) or
  ``degraded`` (keep running with exec and tools blocked).
- This gives drift detection, not tamper-proofing: a root attacker can re-sign with a device key.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from appliance.errors import ConfigError

__all__ = [
    "IntegrityMismatch",
    "IntegrityReport",
    "build_manifest",
    "check_baseline",
    "enforce",
    "run_periodic_checks",
    "write_baseline",
]

_CHUNK = 1024 * 1024
MANIFEST_VERSION = 1


class IntegrityMismatch(ConfigError):
    """The runtime files differ from the baseline (or the baseline's signature is bad) and policy refuses."""


@attrs.frozen
class IntegrityReport:
    """Outcome of one check: which files changed, went missing or appeared, and the signature state."""

    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    signature: str = "unsigned"  # unsigned | valid | invalid | missing
    manifest_sha256: str = ""

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.added) and self.signature in ("unsigned", "valid")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "changed": list(self.changed),
            "missing": list(self.missing),
            "added": list(self.added),
            "signature": self.signature,
            "manifest_sha256": self.manifest_sha256,
        }


def _hash_file(path: Path, st: os.stat_result) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            raise OSError(f"{path} changed while it was being opened")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    finally:
        os.close(fd)


def _entries(root: Path) -> Iterable[tuple[str, Path, os.stat_result]]:
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode):
        yield root.name, root, st
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            path = Path(dirpath) / name
            yield str(path.relative_to(root.parent)), path, path.lstat()


def build_manifest(roots: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Hash every regular file under ``roots`` (files or directories); keys are absolute paths."""
    files: dict[str, dict[str, Any]] = {}
    root_list = []
    for raw in roots:
        root = Path(raw).absolute()
        root_list.append(str(root))
        for rel, path, st in _entries(root):
            key = str(root.parent / rel)
            if stat.S_ISLNK(st.st_mode):
                files[key] = {"type": "symlink", "target": os.readlink(path)}
            elif stat.S_ISREG(st.st_mode):
                files[key] = {
                    "type": "file",
                    "sha256": _hash_file(path, st),
                    "size": st.st_size,
                    "mode": stat.S_IMODE(st.st_mode),
                }
    return {"version": MANIFEST_VERSION, "roots": root_list, "files": files}


def _canonical(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _load_private_key(path: str | os.PathLike[str]) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = Path(path).read_bytes()
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("signing key is not an Ed25519 key", source=str(path))
    return key


def _load_public_key(path: str | os.PathLike[str]) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    data = Path(path).read_bytes()
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if isinstance(private, Ed25519PrivateKey):
            return private.public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("verify key is not an Ed25519 key", source=str(path))
    return key


def write_baseline(
    roots: Iterable[str | os.PathLike[str]],
    manifest_path: str | os.PathLike[str],
    *,
    signing_key: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Build the manifest, write it atomically, and sign it when a key is given. Returns the manifest."""
    manifest = build_manifest(roots)
    data = _canonical(manifest)
    out = Path(manifest_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    sig_path = out.with_name(out.name + ".sig")
    if signing_key is not None:
        sig_path.write_bytes(_load_private_key(signing_key).sign(data))
    else:
        sig_path.unlink(missing_ok=True)
    return manifest


def check_baseline(
    manifest_path: str | os.PathLike[str], *, verify_key: str | os.PathLike[str] | None = None
) -> IntegrityReport:
    """Re-hash the baseline's roots and compare. With ``verify_key`` a missing or bad signature is reported.

    Raises :class:`~appliance.errors.ConfigError` when the manifest cannot be read."""
    path = Path(manifest_path)
    try:
        data = path.read_bytes()
        manifest = json.loads(data)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read integrity baseline: {exc}", source=str(path)) from exc
    signature = "unsigned"
    sig_path = path.with_name(path.name + ".sig")
    if verify_key is not None:
        from cryptography.exceptions import InvalidSignature

        if not sig_path.exists():
            signature = "missing"
        else:
            try:
                _load_public_key(verify_key).verify(sig_path.read_bytes(), data)
                signature = "valid"
            except InvalidSignature:
                signature = "invalid"
    expected: dict[str, Any] = manifest.get("files", {})
    current = build_manifest([r for r in manifest.get("roots", []) if Path(r).exists()])["files"]
    changed = tuple(sorted(k for k in expected.keys() & current.keys() if expected[k] != current[k]))
    missing = tuple(sorted(expected.keys() - current.keys()))
    added = tuple(sorted(current.keys() - expected.keys()))
    return IntegrityReport(
        changed=changed,
        missing=missing,
        added=added,
        signature=signature,
        manifest_sha256=hashlib.sha256(data).hexdigest(),
    )


def enforce(report: IntegrityReport, policy: str) -> bool:
    """Apply the mismatch policy. Returns ``True`` when the defender must run degraded.

    Raises :class:`IntegrityMismatch` when ``policy`` is ``refuse`` and the check failed."""
    if report.ok:
        return False
    if policy == "refuse":
        files = [*report.changed, *report.missing, *report.added]
        raise IntegrityMismatch(
            f"integrity check failed: {len(files)} file(s) differ, signature {report.signature}: "
            + ", ".join(files[:10]),
            source="integrity",
        )
    return True


async def run_periodic_checks(
    manifest_path: str | os.PathLike[str],
    *,
    interval_s: float,
    on_report: Callable[[IntegrityReport], Awaitable[None]],
    verify_key: str | os.PathLike[str] | None = None,
) -> None:
    """Check now and then every ``interval_s`` seconds, off the event loop (hashing is slow on SD cards)."""
    import trio

    while True:
        report = await trio.to_thread.run_sync(lambda: check_baseline(manifest_path, verify_key=verify_key))
        await on_report(report)
        await trio.sleep(interval_s)
