"""Build and verify a release on disk: bundle dir -> archive + manifest + minisign signature (file shell).

``dist/`` after :func:`build_release`::

    <name>-<version>-<arch>.tar.zst                  the bundle archive
    <name>-<version>-<arch>.manifest.json            canonical JSON (see appliance.artifact.manifest)
    <name>-<version>-<arch>.manifest.json.minisig    `minisign -V -p key.pub -m <manifest>` accepts it

Everything but the signature is a pure function of the bundle and SOURCE_DATE_EPOCH; Ed25519 is
deterministic, so with the same key the signature is byte-identical too.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from appliance.artifact import minisign
from appliance.artifact.archive import check_archive_contents, hash_file, scan_bundle, write_archive
from appliance.artifact.keys import TrustSet
from appliance.artifact.manifest import Manifest, serialise_manifest
from appliance.artifact.policy import UpdateContext, check_archive, check_manifest
from appliance.log import get_logger

__all__ = ["ReleaseFiles", "build_release", "release_files", "sign_file", "verify_release"]

log = get_logger("appliance.artifact")
DAY = 86400


@attrs.frozen
class ReleaseFiles:
    archive: Path
    manifest: Path
    signature: Path


def release_files(out_dir: str | os.PathLike[str], name: str, version: str, arch: str) -> ReleaseFiles:
    stem = Path(out_dir) / f"{name}-{version}-{arch}"
    return ReleaseFiles(
        archive=stem.with_name(stem.name + ".tar.zst"),
        manifest=stem.with_name(stem.name + ".manifest.json"),
        signature=stem.with_name(stem.name + ".manifest.json.minisig"),
    )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sign_file(key: minisign.SecretKey, path: str | os.PathLike[str], trusted_comment: str) -> Path:
    """``minisign -S`` equivalent: writes ``<path>.minisig``."""
    data = Path(path).read_bytes()
    sig = minisign.sign(key, data, trusted_comment=trusted_comment)
    out = Path(f"{os.fspath(path)}.minisig")
    _write_atomic(out, minisign.encode_signature(sig).encode("utf-8"))
    return out


def build_release(
    bundle_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    key: minisign.SecretKey,
    name: str,
    version: str,
    arch: str,
    source_date_epoch: int,
    valid_days: int,
    min_version: str,
) -> tuple[ReleaseFiles, Manifest]:
    os.makedirs(out_dir, exist_ok=True)
    files = release_files(out_dir, name, version, arch)
    listing = scan_bundle(bundle_dir, top=name)
    archive = write_archive(bundle_dir, listing, files.archive, mtime=source_date_epoch)
    manifest = Manifest(
        name=name,
        version=version,
        arch=arch,
        created=source_date_epoch,
        expires=source_date_epoch + valid_days * DAY,
        min_version=min_version,
        archive=archive,
        files=tuple(listing.files),
        symlinks=tuple(listing.symlinks),
        source_date_epoch=source_date_epoch,
    )
    _write_atomic(files.manifest, serialise_manifest(manifest))
    sign_file(key, files.manifest, manifest.trusted_comment)
    log.info(
        "artifact_built",
        archive=str(files.archive),
        archive_sha256=archive.sha256,
        archive_size=archive.size,
        files=len(manifest.files),
        key_id=key.public.key_id_hex,
    )
    return files, manifest


def verify_release(
    trust: TrustSet,
    manifest_path: str | os.PathLike[str],
    ctx: UpdateContext,
    *,
    signature_path: str | os.PathLike[str] | None = None,
    archive_path: str | os.PathLike[str] | None = None,
    deep: bool = True,
) -> Manifest:
    """Every check in order; the archive is looked up next to the manifest unless given."""
    manifest_bytes = Path(manifest_path).read_bytes()
    sig_text = Path(signature_path or f"{os.fspath(manifest_path)}.minisig").read_text(encoding="utf-8")
    manifest = check_manifest(trust, manifest_bytes, sig_text, ctx)
    archive = Path(archive_path) if archive_path else Path(manifest_path).with_name(manifest.archive.filename)
    size, sha = hash_file(archive)
    check_archive(manifest, size, sha)
    if deep:
        check_archive_contents(manifest, archive)
    return manifest
