"""The manifest's canonical bytes and strict parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.artifact.errors import ArtifactRejected
from appliance.artifact.manifest import (
    ArchiveEntry,
    FileEntry,
    Manifest,
    format_time,
    parse_manifest,
    parse_time,
    parse_version,
    serialise_manifest,
)

SHA = "ab" * 32


def manifest(**changes: object) -> Manifest:
    fields: dict[str, object] = {
        "name": "appliance",
        "version": "1.2.3",
        "arch": "aarch64",
        "created": 1_700_000_000,
        "expires": 1_700_000_000 + 86400,
        "min_version": "1.0",
        "archive": ArchiveEntry(filename="appliance-1.2.3-aarch64.tar.zst", size=10, sha256=SHA),
        "files": (FileEntry("appliance/a", 1, SHA, 0o755), FileEntry("appliance/b/c", 2, SHA)),
        "symlinks": (("appliance/b/d", "c"),),
        "source_date_epoch": 1_700_000_000,
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


def test_round_trip_is_byte_exact() -> None:
    data = serialise_manifest(manifest())
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert parse_manifest(data) == manifest()
    assert serialise_manifest(parse_manifest(data)) == data


@given(
    version=st.from_regex(r"\A(0|[1-9][0-9]{0,3})(\.(0|[1-9][0-9]{0,3})){0,3}\Z"),
    sizes=st.lists(st.integers(0, 2**40), min_size=0, max_size=5),
    created=st.integers(0, 2**32),
)
def test_round_trip_property(version: str, sizes: list[int], created: int) -> None:
    files = tuple(FileEntry(f"appliance/f{i:03d}", size, SHA) for i, size in enumerate(sizes))
    m = manifest(version=version, files=files, created=created, expires=created + 1, symlinks=())
    assert parse_manifest(serialise_manifest(m)) == m


def test_non_canonical_bytes_are_refused() -> None:
    pretty = json.dumps(json.loads(serialise_manifest(manifest())), indent=2).encode()
    with pytest.raises(ArtifactRejected, match="canonical"):
        parse_manifest(pretty)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("extra", 1),
        ("version", "1.2.3-beta"),
        ("version", "01.2"),
        ("schema", 2),
        ("created", "yesterday"),
        ("files", [{"path": "../x", "size": 1, "sha256": SHA, "mode": "644"}]),
        ("files", [{"path": "/etc/passwd", "size": 1, "sha256": SHA, "mode": "644"}]),
        ("files", [{"path": "a", "size": 1, "sha256": SHA, "mode": "4755"}]),
        ("files", [{"path": "a", "size": True, "sha256": SHA, "mode": "644"}]),
        ("archive", {"filename": "a", "size": 1, "sha256": "AB" * 32}),
    ],
)
def test_strict_parse(key: str, value: object) -> None:
    doc = json.loads(serialise_manifest(manifest()))
    doc[key] = value
    data = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    with pytest.raises(ArtifactRejected):
        parse_manifest(data)


def test_unsorted_files_and_bad_expiry_are_refused() -> None:
    with pytest.raises(ArtifactRejected, match="sorted"):
        manifest(files=(FileEntry("appliance/b", 1, SHA), FileEntry("appliance/a", 1, SHA)))
    with pytest.raises(ArtifactRejected, match="expires"):
        manifest(expires=1_700_000_000)


def test_versions_compare_numerically() -> None:
    assert parse_version("1.10") > parse_version("1.9")
    assert parse_version("1.4") == parse_version("1.4.0")
    assert parse_version("0") < parse_version("0.1")


def test_time_round_trip() -> None:
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert parse_time(format_time(1_700_000_000)) == 1_700_000_000
