"""The artifact manifest: what is signed, and its one canonical byte form (sans-IO).

Rules:
- The signature covers the manifest's exact bytes. Verification parses only bytes whose signature checked
  out, and never re-serialises before verifying.
- The canonical form is JSON with sorted keys, ``(",", ":")`` separators, ASCII only and one trailing
  newline, so the same inputs always give the same bytes (reproducible builds compare them).
- Parsing is strict: unknown keys, wrong types, bad hashes or versions raise ``ArtifactRejected``.
- Times are whole seconds since the epoch in the model and RFC 3339 ``...Z`` strings on the wire; the
  current time is an argument, never read here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.artifact.errors import ArtifactRejected, RejectReason

__all__ = [
    "SCHEMA",
    "ArchiveEntry",
    "FileEntry",
    "Manifest",
    "canonical_json",
    "format_time",
    "parse_manifest",
    "parse_time",
    "parse_version",
    "serialise_manifest",
]

SCHEMA = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){0,3}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def parse_version(text: str) -> tuple[int, ...]:
    """Dotted release numbers only (``1.4.2``); ordering is numeric and ``1.4 == 1.4.0``."""
    if not isinstance(text, str) or not _VERSION.match(text):
        raise ArtifactRejected(f"bad version: {text!r}", reason=RejectReason.BAD_MANIFEST)
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def format_time(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    try:
        parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        raise ArtifactRejected(f"bad time: {text!r}", reason=RejectReason.BAD_MANIFEST) from None
    return int(parsed.timestamp())


def _check_sha(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _HEX64.match(value):
        raise ArtifactRejected(f"{attribute.name}: not a lower-case sha256 hex digest")


def _check_path(_inst: object, _attribute: attrs.Attribute[str], value: str) -> None:
    parts = value.split("/")
    if not value or value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in value:
        raise ArtifactRejected(f"unsafe path in manifest: {value!r}", reason=RejectReason.BAD_MANIFEST)


def _check_non_negative(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ArtifactRejected(f"{attribute.name} must be >= 0")


@attrs.frozen
class FileEntry:
    """One regular file of the bundle (``mode`` is 0o755 or 0o644 after normalisation)."""

    path: str = attrs.field(validator=_check_path)
    size: int = attrs.field(validator=_check_non_negative)
    sha256: str = attrs.field(validator=_check_sha)
    mode: int = 0o644


@attrs.frozen
class ArchiveEntry:
    """The compressed bundle archive as shipped (``<name>-<version>-<arch>.tar.zst``)."""

    filename: str = attrs.field(validator=_check_path)
    size: int = attrs.field(validator=_check_non_negative)
    sha256: str = attrs.field(validator=_check_sha)


def _check_name(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _NAME.match(value):
        raise ArtifactRejected(f"{attribute.name}: {value!r} is not a valid name")


def _check_version(_inst: object, _attribute: attrs.Attribute[str], value: str) -> None:
    parse_version(value)


@attrs.frozen
class Manifest:
    name: str = attrs.field(validator=_check_name)
    version: str = attrs.field(validator=_check_version)
    arch: str = attrs.field(validator=_check_name)
    created: int  # seconds since the epoch (the build's SOURCE_DATE_EPOCH)
    expires: int
    min_version: str = attrs.field(validator=_check_version)  # the oldest installed version that may update
    archive: ArchiveEntry
    files: tuple[FileEntry, ...]
    #: symlinks inside the bundle: path -> target (relative, inside the bundle)
    symlinks: tuple[tuple[str, str], ...] = ()
    source_date_epoch: int = 0
    schema: int = SCHEMA

    def __attrs_post_init__(self) -> None:
        if self.expires <= self.created:
            raise ArtifactRejected("expires must be after created")
        paths = [f.path for f in self.files]
        if paths != sorted(paths) or len(set(paths)) != len(paths):
            raise ArtifactRejected("files must be sorted by path and unique")

    @property
    def trusted_comment(self) -> str:
        """What the signature's trusted comment says, so ``minisign -V`` shows which release it is."""
        return (
            f"appliance-artifact name={self.name} version={self.version} arch={self.arch} "
            f"archive_sha256={self.archive.sha256}"
        )

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def _to_wire(m: Manifest) -> dict[str, Any]:
    return {
        "schema": m.schema,
        "name": m.name,
        "version": m.version,
        "arch": m.arch,
        "created": format_time(m.created),
        "expires": format_time(m.expires),
        "min_version": m.min_version,
        "source_date_epoch": m.source_date_epoch,
        "archive": {"filename": m.archive.filename, "size": m.archive.size, "sha256": m.archive.sha256},
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "mode": f"{f.mode:o}"} for f in m.files
        ],
        "symlinks": [{"path": p, "target": t} for p, t in m.symlinks],
    }


def canonical_json(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode(
        "ascii"
    )


def serialise_manifest(m: Manifest) -> bytes:
    return canonical_json(_to_wire(m))


_TOP_KEYS = {
    "schema",
    "name",
    "version",
    "arch",
    "created",
    "expires",
    "min_version",
    "source_date_epoch",
    "archive",
    "files",
    "symlinks",
}


def _obj(value: Any, keys: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ArtifactRejected(f"{where}: expected an object")
    if set(value) != keys:
        raise ArtifactRejected(
            f"{where}: keys differ from the schema",
            details={"missing": sorted(keys - set(value)), "unknown": sorted(set(value) - keys)},
        )
    return value


def _typed(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArtifactRejected(f"{where}: expected {kind.__name__}")
    return value


def parse_manifest(data: bytes) -> Manifest:
    """Strict parse of verified bytes; also insists they are in canonical form (one byte form per manifest)."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArtifactRejected("manifest is not JSON") from None
    top = _obj(raw, _TOP_KEYS, "manifest")
    if _typed(top["schema"], int, "schema") != SCHEMA:
        raise ArtifactRejected(f"unsupported manifest schema {top['schema']!r}")
    archive = _obj(top["archive"], {"filename", "size", "sha256"}, "archive")
    files = []
    for i, item in enumerate(_typed(top["files"], list, "files")):
        entry = _obj(item, {"path", "size", "sha256", "mode"}, f"files[{i}]")
        mode_text = _typed(entry["mode"], str, f"files[{i}].mode")
        if mode_text not in ("644", "755"):
            raise ArtifactRejected(f"files[{i}].mode: must be 644 or 755")
        files.append(
            FileEntry(
                path=_typed(entry["path"], str, f"files[{i}].path"),
                size=_typed(entry["size"], int, f"files[{i}].size"),
                sha256=_typed(entry["sha256"], str, f"files[{i}].sha256"),
                mode=int(mode_text, 8),
            )
        )
    symlinks = []
    for i, item in enumerate(_typed(top["symlinks"], list, "symlinks")):
        link = _obj(item, {"path", "target"}, f"symlinks[{i}]")
        symlinks.append((_typed(link["path"], str, "path"), _typed(link["target"], str, "target")))
    manifest = Manifest(
        name=_typed(top["name"], str, "name"),
        version=_typed(top["version"], str, "version"),
        arch=_typed(top["arch"], str, "arch"),
        created=parse_time(_typed(top["created"], str, "created")),
        expires=parse_time(_typed(top["expires"], str, "expires")),
        min_version=_typed(top["min_version"], str, "min_version"),
        source_date_epoch=_typed(top["source_date_epoch"], int, "source_date_epoch"),
        archive=ArchiveEntry(
            filename=_typed(archive["filename"], str, "archive.filename"),
            size=_typed(archive["size"], int, "archive.size"),
            sha256=_typed(archive["sha256"], str, "archive.sha256"),
        ),
        files=tuple(files),
        symlinks=tuple(symlinks),
    )
    if serialise_manifest(manifest) != data:
        raise ArtifactRejected("manifest is not in canonical form")
    return manifest
