from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.defender.integrity import IntegrityMismatch, check_baseline, enforce, write_baseline
from appliance.errors import ConfigError


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "appliance").write_bytes(b"\x7fELF fake binary")
    (root / "profiles").mkdir()
    (root / "profiles" / "pi4.toml").write_text("ram_mb = 4096\n")
    (root / "units").mkdir()
    (root / "units" / "appliance.service").write_text("[Service]\nExecStart=/opt/appliance/bin/appliance\n")
    return root


def test_clean_check_passes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "opt")
    manifest = write_baseline([root], tmp_path / "state" / "baseline.json")
    assert len(manifest["files"]) == 3
    report = check_baseline(tmp_path / "state" / "baseline.json")
    assert report.ok
    assert enforce(report, "refuse") is False


def test_mismatch_lists_changed_missing_and_added_files(tmp_path: Path) -> None:
    root = _tree(tmp_path / "opt")
    write_baseline([root], tmp_path / "baseline.json")
    (root / "bin" / "appliance").write_bytes(b"\x7fELF trojaned")
    (root / "profiles" / "pi4.toml").unlink()
    (root / "units" / "evil.service").write_text("[Service]\n")
    report = check_baseline(tmp_path / "baseline.json")
    assert not report.ok
    assert report.changed == (str(root / "bin" / "appliance"),)
    assert report.missing == (str(root / "profiles" / "pi4.toml"),)
    assert report.added == (str(root / "units" / "evil.service"),)
    assert enforce(report, "degraded") is True
    with pytest.raises(IntegrityMismatch, match="3 file"):
        enforce(report, "refuse")


def test_symlinks_are_recorded_not_followed(tmp_path: Path) -> None:
    root = _tree(tmp_path / "opt")
    (root / "bin" / "link").symlink_to("appliance")
    write_baseline([root], tmp_path / "baseline.json")
    (root / "bin" / "link").unlink()
    (root / "bin" / "link").symlink_to("/bin/sh")
    assert check_baseline(tmp_path / "baseline.json").changed == (str(root / "bin" / "link"),)


def test_signed_baseline_verifies_and_detects_a_forged_manifest(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_path = tmp_path / "signing.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    )
    pub_path = tmp_path / "verify.pub"
    pub_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    root = _tree(tmp_path / "opt")
    manifest_path = tmp_path / "baseline.json"
    write_baseline([root], manifest_path, signing_key=key_path)
    assert check_baseline(manifest_path, verify_key=pub_path).signature == "valid"
    manifest_path.write_text(manifest_path.read_text().replace('"size":', '"size" :'))
    report = check_baseline(manifest_path, verify_key=pub_path)
    assert report.signature == "invalid"
    assert not report.ok
    (tmp_path / "baseline.json.sig").unlink()
    assert check_baseline(manifest_path, verify_key=pub_path).signature == "missing"


def test_unreadable_manifest_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        check_baseline(tmp_path / "nope.json")
