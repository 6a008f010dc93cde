"""Key rotation: only a signed, newer rotation by a trusted key changes the trust set."""

from __future__ import annotations

import pytest

from appliance.artifact import minisign
from appliance.artifact.errors import ArtifactRejected, RejectReason
from appliance.artifact.keys import KeyRotation, TrustSet, apply_rotations, serialise_rotation
from appliance.artifact.trusted_keys import EMBEDDED_PUBLIC_KEYS
from tests.artifact.keyring import SDE, make_key


def pub_line(key: minisign.SecretKey) -> str:
    return minisign.encode_public_key(key.public).splitlines()[1]


def rotation(signer: minisign.SecretKey, seq: int, *new: minisign.SecretKey) -> tuple[bytes, str]:
    data = serialise_rotation(KeyRotation(sequence=seq, created=SDE, keys=tuple(pub_line(k) for k in new)))
    return data, minisign.encode_signature(minisign.sign(signer, data, trusted_comment=f"rotation {seq}"))


def test_embedded_keys_parse() -> None:
    assert len(TrustSet.of(EMBEDDED_PUBLIC_KEYS).keys) >= 1


def test_chain_of_rotations() -> None:
    k1, k2, k3 = make_key(1), make_key(2), make_key(3)
    embedded = TrustSet.of([pub_line(k1)])
    trust = apply_rotations(
        embedded, [rotation(k2, 2, k3), rotation(k1, 1, k2)]
    )  # order on disk is irrelevant
    assert trust.keys == (k3.public,)
    assert trust.sequence == 2


@pytest.mark.parametrize(
    "case",
    ["untrusted signer", "replay", "removed key signs back", "tampered"],
)
def test_bad_rotations(case: str) -> None:
    k1, k2, k3 = make_key(1), make_key(2), make_key(3)
    embedded = TrustSet.of([pub_line(k1)])
    if case == "untrusted signer":
        chain = [rotation(k3, 1, k3)]
    elif case == "replay":
        chain = [rotation(k1, 1, k2), rotation(k1, 1, k1)]
    elif case == "removed key signs back":
        chain = [rotation(k1, 1, k2), rotation(k1, 2, k1)]
    else:
        data, sig = rotation(k1, 1, k2)
        chain = [(data.replace(b'"sequence":1', b'"sequence":9'), sig)]
    with pytest.raises(ArtifactRejected) as info:
        apply_rotations(embedded, chain)
    assert info.value.reason == RejectReason.BAD_ROTATION


def test_not_a_rotation() -> None:
    with pytest.raises(ArtifactRejected):
        apply_rotations(TrustSet.of([pub_line(make_key(1))]), [(b'{"kind":"other"}\n', "")])
