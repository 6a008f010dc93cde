"""The device-side checks: each acceptance rejection on its own, sans-IO."""

from __future__ import annotations

import attrs
import pytest

from appliance.artifact import minisign
from appliance.artifact.errors import ArtifactRejected, RejectReason
from appliance.artifact.keys import TrustSet
from appliance.artifact.manifest import ArchiveEntry, FileEntry, Manifest, serialise_manifest
from appliance.artifact.policy import UpdateContext, check_archive, check_manifest
from tests.artifact.keyring import SDE

SHA = "cd" * 32
NOW = SDE + 3600


def release(version: str = "1.2.0", min_version: str = "1.0") -> Manifest:
    return Manifest(
        name="appliance",
        version=version,
        arch="aarch64",
        created=SDE,
        expires=SDE + 30 * 86400,
        min_version=min_version,
        archive=ArchiveEntry("a.tar.zst", 42, SHA),
        files=(FileEntry("appliance/appliance", 1, SHA, 0o755),),
        source_date_epoch=SDE,
    )


def signed(m: Manifest, key: minisign.SecretKey) -> tuple[bytes, str]:
    data = serialise_manifest(m)
    return data, minisign.encode_signature(minisign.sign(key, data, trusted_comment=m.trusted_comment))


@pytest.fixture
def trust(key: minisign.SecretKey) -> TrustSet:
    return TrustSet(keys=(key.public,))


def reason(trust: TrustSet, data: bytes, sig: str, ctx: UpdateContext) -> RejectReason:
    with pytest.raises(ArtifactRejected) as info:
        check_manifest(trust, data, sig, ctx)
    return info.value.reason


def test_good_release_is_accepted(trust: TrustSet, key: minisign.SecretKey) -> None:
    data, sig = signed(release(), key)
    ctx = UpdateContext(now=NOW, installed_version="1.1", arch="aarch64")
    assert check_manifest(trust, data, sig, ctx) == release()


def test_changed_manifest_field_is_rejected(trust: TrustSet, key: minisign.SecretKey) -> None:
    data, sig = signed(release(), key)
    tampered = data.replace(b'"min_version":"1.0"', b'"min_version":"0.1"')
    assert tampered != data
    assert reason(trust, tampered, sig, UpdateContext(now=NOW)) == RejectReason.BAD_SIGNATURE


def test_signature_by_another_key_is_rejected(trust: TrustSet, other_key: minisign.SecretKey) -> None:
    data, sig = signed(release(), other_key)
    assert reason(trust, data, sig, UpdateContext(now=NOW)) == RejectReason.UNTRUSTED_KEY


def test_other_key_claiming_our_key_id_is_rejected(trust: TrustSet, key: minisign.SecretKey) -> None:
    impostor = minisign.keypair_from_seed(key.key_id, b"\x09" * 32)
    data, sig = signed(release(), impostor)
    assert reason(trust, data, sig, UpdateContext(now=NOW)) == RejectReason.BAD_SIGNATURE


def test_expired_manifest_is_rejected(trust: TrustSet, key: minisign.SecretKey) -> None:
    data, sig = signed(release(), key)
    later = UpdateContext(now=SDE + 30 * 86400)
    assert reason(trust, data, sig, later) == RejectReason.EXPIRED


def test_downgrade_below_floor_is_rejected(trust: TrustSet, key: minisign.SecretKey) -> None:
    data, sig = signed(release(version="1.2.0"), key)
    assert reason(trust, data, sig, UpdateContext(now=NOW, installed_version="1.3")) == RejectReason.DOWNGRADE
    floor = UpdateContext(now=NOW, installed_version="1.1", floor_version="1.2.1")
    assert reason(trust, data, sig, floor) == RejectReason.DOWNGRADE
    rollback = UpdateContext(now=NOW, installed_version="1.3", allow_downgrade=True)
    assert check_manifest(trust, data, sig, rollback).version == "1.2.0"


def test_installed_version_below_min_version_is_rejected(trust: TrustSet, key: minisign.SecretKey) -> None:
    data, sig = signed(release(min_version="1.1"), key)
    old = UpdateContext(now=NOW, installed_version="1.0.9")
    assert reason(trust, data, sig, old) == RejectReason.TOO_OLD_TO_UPDATE


def test_wrong_arch_is_rejected(trust: TrustSet, key: minisign.SecretKey) -> None:
    data, sig = signed(release(), key)
    assert reason(trust, data, sig, UpdateContext(now=NOW, arch="x86_64")) == RejectReason.WRONG_ARCH


def test_trusted_comment_must_name_the_release(trust: TrustSet, key: minisign.SecretKey) -> None:
    data = serialise_manifest(release())
    sig = minisign.encode_signature(minisign.sign(key, data, trusted_comment="something else"))
    assert reason(trust, data, sig, UpdateContext(now=NOW)) == RejectReason.BAD_SIGNATURE


def test_archive_hash_and_size_must_match() -> None:
    m = release()
    check_archive(m, 42, SHA)
    for size, sha in ((42, "ce" * 32), (43, SHA)):
        with pytest.raises(ArtifactRejected) as info:
            check_archive(m, size, sha)
        assert info.value.reason == RejectReason.ARCHIVE_MISMATCH


def test_rejections_carry_reason_in_details(trust: TrustSet, other_key: minisign.SecretKey) -> None:
    data, sig = signed(attrs.evolve(release()), other_key)
    with pytest.raises(ArtifactRejected) as info:
        check_manifest(trust, data, sig, UpdateContext(now=NOW))
    assert info.value.details == {"reason": "untrusted_key"}
    assert info.value.exit_code == 65
