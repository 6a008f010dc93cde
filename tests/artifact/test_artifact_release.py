"""Archive + manifest + signature on disk: determinism, verify, tamper cases, stock minisign, the CLI."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from appliance.artifact import minisign
from appliance.artifact.archive import extract_archive, scan_bundle
from appliance.artifact.cli import main as artifact_main
from appliance.artifact.errors import ArtifactRejected, RejectReason
from appliance.artifact.keys import TrustSet
from appliance.artifact.manifest import parse_manifest
from appliance.artifact.policy import UpdateContext
from appliance.artifact.release import ReleaseFiles, build_release, verify_release
from tests.artifact.keyring import MINISIGN, SDE, needs_minisign

NOW = SDE + 60


def build(bundle: Path, out: Path, key: minisign.SecretKey, **kw: object) -> ReleaseFiles:
    params: dict[str, object] = {
        "name": "appliance",
        "version": "1.2.0",
        "arch": "x86_64",
        "source_date_epoch": SDE,
        "valid_days": 30,
        "min_version": "1.0",
    }
    params.update(kw)
    files, _ = build_release(bundle, out, key=key, **params)  # type: ignore[arg-type]
    return files


def trust_of(key: minisign.SecretKey) -> TrustSet:
    return TrustSet(keys=(key.public,))


def test_two_builds_are_byte_identical(bundle: Path, tmp_path: Path, key: minisign.SecretKey) -> None:
    a = build(bundle, tmp_path / "a", key)
    os.utime(bundle / "appliance", (1, 1))  # mtimes and the build dir must not matter
    b = build(bundle, tmp_path / "b", key)
    for x, y in ((a.archive, b.archive), (a.manifest, b.manifest), (a.signature, b.signature)):
        assert x.read_bytes() == y.read_bytes()


def test_archive_is_normalised(bundle: Path, tmp_path: Path, key: minisign.SecretKey) -> None:
    files = build(bundle, tmp_path / "out", key)
    with (
        open(files.archive, "rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zfh,
        tarfile.open(fileobj=zfh, mode="r|") as tar,
    ):
        members = [(m.name, m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) for m in tar]
    names = [m[0] for m in members]
    assert names == sorted(names)
    assert names[0] == "appliance"
    assert {m[2:] for m in members} == {(SDE, 0, 0, "", "")}
    modes = {m[0]: m[1] for m in members}
    assert modes["appliance/appliance"] == 0o755
    assert modes["appliance/_internal/lib/libx.so.1"] == 0o644
    assert "appliance/_internal/empty" in modes


def test_verify_accepts_the_good_artifact(bundle: Path, tmp_path: Path, key: minisign.SecretKey) -> None:
    files = build(bundle, tmp_path / "out", key)
    ctx = UpdateContext(now=NOW, installed_version="1.1", arch="x86_64")
    manifest = verify_release(trust_of(key), files.manifest, ctx)
    assert [f.path for f in manifest.files] == [
        "appliance/_internal/base_library.zip",
        "appliance/_internal/lib/libx.so.1",
        "appliance/appliance",
    ]
    dest = tmp_path / "installed"
    extract_archive(manifest, files.archive, dest)
    assert (dest / "appliance" / "_internal" / "lib" / "libx.so").resolve().name == "libx.so.1"
    assert scan_bundle(dest / "appliance").files == list(manifest.files)


def test_flipped_byte_in_archive_is_rejected(bundle: Path, tmp_path: Path, key: minisign.SecretKey) -> None:
    files = build(bundle, tmp_path / "out", key)
    data = bytearray(files.archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    files.archive.write_bytes(bytes(data))
    with pytest.raises(ArtifactRejected) as info:
        verify_release(trust_of(key), files.manifest, UpdateContext(now=NOW))
    assert info.value.reason == RejectReason.ARCHIVE_MISMATCH


def test_swapped_file_inside_archive_is_rejected(
    bundle: Path, tmp_path: Path, key: minisign.SecretKey
) -> None:
    """Defence in depth: a re-packed archive whose own hash was also put in the manifest by an attacker
    cannot get past the signature; here we check the per-file layer on its own."""
    good = build(bundle, tmp_path / "good", key)
    manifest = parse_manifest(good.manifest.read_bytes())
    (bundle / "_internal" / "lib" / "libx.so.1").write_bytes(b"evil")
    evil = build(bundle, tmp_path / "evil", key)
    from appliance.artifact.archive import check_archive_contents

    with pytest.raises(ArtifactRejected) as info:
        check_archive_contents(manifest, evil.archive)
    assert info.value.reason == RejectReason.FILE_MISMATCH


def test_changed_manifest_field_is_rejected(bundle: Path, tmp_path: Path, key: minisign.SecretKey) -> None:
    files = build(bundle, tmp_path / "out", key)
    text = files.manifest.read_bytes()
    files.manifest.write_bytes(text.replace(b'"version":"1.2.0"', b'"version":"9.2.0"'))
    with pytest.raises(ArtifactRejected) as info:
        verify_release(trust_of(key), files.manifest, UpdateContext(now=NOW))
    assert info.value.reason == RejectReason.BAD_SIGNATURE


def test_other_key_expired_and_downgrade_are_rejected(
    bundle: Path, tmp_path: Path, key: minisign.SecretKey, other_key: minisign.SecretKey
) -> None:
    files = build(bundle, tmp_path / "out", key)
    cases = [
        (trust_of(other_key), UpdateContext(now=NOW), RejectReason.UNTRUSTED_KEY),
        (trust_of(key), UpdateContext(now=SDE + 31 * 86400), RejectReason.EXPIRED),
        (trust_of(key), UpdateContext(now=NOW, installed_version="1.3.0"), RejectReason.DOWNGRADE),
        (trust_of(key), UpdateContext(now=NOW, installed_version="0.9"), RejectReason.TOO_OLD_TO_UPDATE),
    ]
    for trust, ctx, want in cases:
        with pytest.raises(ArtifactRejected) as info:
            verify_release(trust, files.manifest, ctx)
        assert info.value.reason == want


def test_symlink_escaping_the_bundle_is_refused(
    bundle: Path, tmp_path: Path, key: minisign.SecretKey
) -> None:
    os.symlink("../../../etc/passwd", bundle / "_internal" / "evil")
    with pytest.raises(ArtifactRejected, match="leaves the bundle"):
        build(bundle, tmp_path / "out", key)


@needs_minisign
def test_stock_minisign_accepts_the_release(bundle: Path, tmp_path: Path, key: minisign.SecretKey) -> None:
    files = build(bundle, tmp_path / "out", key)
    (tmp_path / "k.pub").write_text(minisign.encode_public_key(key.public))
    out = subprocess.run(
        [str(MINISIGN), "-V", "-p", str(tmp_path / "k.pub"), "-m", str(files.manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "appliance-artifact name=appliance version=1.2.0 arch=x86_64" in out.stdout


def test_cli_keygen_build_verify(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(SDE))
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    keys = tmp_path / "keys"
    assert (
        artifact_main(
            ["artifact", "keygen", "--kdf", "interactive", "--passphrase-file", str(pw),
             "--secret-key", str(keys / "k.key"), "--public-key", str(keys / "k.pub")]
        )
        == 0
    )  # fmt: skip
    assert (keys / "k.key").stat().st_mode & 0o777 == 0o600
    out = tmp_path / "dist"
    argv = ["artifact", "build", "--bundle", str(bundle), "--out", str(out), "--version", "1.2.0"]
    argv += ["--secret-key", str(keys / "k.key"), "--passphrase-file", str(pw), "--min-version", "1.0"]
    assert artifact_main(argv) == 0
    (manifest,) = out.glob("*.manifest.json")
    verify = ["artifact", "verify", str(manifest), "--pubkey", str(keys / "k.pub"), "--now", str(SDE + 1)]
    assert artifact_main(verify) == 0
    assert "OK appliance 1.2.0" in capsys.readouterr().out
    assert artifact_main([*verify, "--installed-version", "2.0", "--json"]) == 65
    assert '"reason": "downgrade"' in capsys.readouterr().out
    # the embedded key did not sign this one
    assert artifact_main(["artifact", "verify", str(manifest), "--now", str(SDE + 1)]) == 65
    # wrong passphrase: exit 77
    pw.write_text("wrong\n")
    assert artifact_main([*argv, "--out", str(tmp_path / "d2")]) == 77


def test_cli_sign_and_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.artifact.keyring import make_key

    k1, k2 = make_key(1), make_key(2)
    (tmp_path / "k1.key").write_text(minisign.encode_secret_key(k1, passphrase=None, salt=b"s" * 32))
    (tmp_path / "k1.pub").write_text(minisign.encode_public_key(k1.public))
    (tmp_path / "k2.pub").write_text(minisign.encode_public_key(k2.public))
    (tmp_path / "f").write_bytes(b"x")
    assert (
        artifact_main(["artifact", "sign", str(tmp_path / "f"), "--secret-key", str(tmp_path / "k1.key")])
        == 0
    )
    sig = minisign.decode_signature((tmp_path / "f.minisig").read_text())
    assert minisign.verify(k1.public, b"x", sig) == "file:f"
    rot = tmp_path / "rotation-1.json"
    argv = [
        "artifact",
        "rotate",
        "--secret-key",
        str(tmp_path / "k1.key"),
        "--new-pubkey",
        str(tmp_path / "k2.pub"),
    ]
    assert artifact_main([*argv, "--sequence", "1", "--out", str(rot), "--source-date-epoch", str(SDE)]) == 0
    from appliance.artifact.keys import apply_rotations

    trust = apply_rotations(
        TrustSet(keys=(k1.public,)), [(rot.read_bytes(), Path(f"{rot}.minisig").read_text())]
    )
    assert trust.keys == (k2.public,)
