"""Which public keys a device trusts: the embedded set, changed only by signed key-rotation manifests.

Rules (sans-IO):
- The binary ships ``EMBEDDED_PUBLIC_KEYS`` (see :mod:`appliance.artifact.trusted_keys`).
- A rotation manifest names the complete new key set and a ``sequence`` number. It is applied only when it
  is signed by a key of the *current* set and its sequence is higher than the last one applied, so an
  old rotation cannot be replayed and a key removed by a rotation cannot sign its way back.
- Rotations are applied in sequence order; the result of a chain is the trust set used for artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from appliance.artifact import minisign
from appliance.artifact.errors import ArtifactRejected, BadSignature, RejectReason
from appliance.artifact.manifest import canonical_json, format_time, parse_time

__all__ = [
    "KeyRotation",
    "TrustSet",
    "apply_rotations",
    "parse_rotation",
    "serialise_rotation",
    "verify_signed",
]

ROTATION_KIND = "key-rotation"


@attrs.frozen
class TrustSet:
    keys: tuple[minisign.PublicKey, ...]
    sequence: int = 0

    @classmethod
    def of(cls, public_keys: Iterable[str], sequence: int = 0) -> TrustSet:
        return cls(keys=tuple(minisign.decode_public_key(k) for k in public_keys), sequence=sequence)

    def find(self, key_id: bytes) -> minisign.PublicKey | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None


def verify_signed(trust: TrustSet, data: bytes, signature_text: str) -> tuple[minisign.PublicKey, str]:
    """Verify ``data`` against whichever trusted key made the signature; return it and the trusted comment."""
    sig = minisign.decode_signature(signature_text)
    key = trust.find(sig.key_id)
    if key is None:
        raise BadSignature(
            f"signed by key {sig.key_id[::-1].hex().upper()}, which is not trusted",
            reason=RejectReason.UNTRUSTED_KEY,
        )
    return key, minisign.verify(key, data, sig)


@attrs.frozen
class KeyRotation:
    sequence: int
    created: int
    keys: tuple[str, ...]  # base64 public-key lines, as minisign prints them
    note: str = ""


def serialise_rotation(rotation: KeyRotation) -> bytes:
    return canonical_json(
        {
            "schema": 1,
            "kind": ROTATION_KIND,
            "sequence": rotation.sequence,
            "created": format_time(rotation.created),
            "keys": list(rotation.keys),
            "note": rotation.note,
        }
    )


def parse_rotation(data: bytes) -> KeyRotation:
    try:
        raw: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArtifactRejected("rotation manifest is not JSON", reason=RejectReason.BAD_ROTATION) from None
    if (
        not isinstance(raw, dict)
        or set(raw) != {"schema", "kind", "sequence", "created", "keys", "note"}
        or raw["schema"] != 1
        or raw["kind"] != ROTATION_KIND
        or not isinstance(raw["sequence"], int)
        or isinstance(raw["sequence"], bool)
        or raw["sequence"] < 1
        or not isinstance(raw["keys"], list)
        or not raw["keys"]
        or not all(isinstance(k, str) for k in raw["keys"])
        or not isinstance(raw["note"], str)
        or not isinstance(raw["created"], str)
    ):
        raise ArtifactRejected("not a key-rotation manifest", reason=RejectReason.BAD_ROTATION)
    for key in raw["keys"]:
        minisign.decode_public_key(key)
    return KeyRotation(
        sequence=raw["sequence"],
        created=parse_time(raw["created"]),
        keys=tuple(raw["keys"]),
        note=raw["note"],
    )


def apply_rotations(embedded: TrustSet, rotations: Sequence[tuple[bytes, str]]) -> TrustSet:
    """Walk signed rotations (data, signature text) in sequence order from the embedded set."""
    parsed = sorted(
        ((parse_rotation(data), data, sig) for data, sig in rotations), key=lambda t: t[0].sequence
    )
    trust = embedded
    for rotation, data, sig in parsed:
        if rotation.sequence <= trust.sequence:
            raise ArtifactRejected(
                f"rotation {rotation.sequence} is not newer than {trust.sequence}",
                reason=RejectReason.BAD_ROTATION,
            )
        try:
            verify_signed(trust, data, sig)
        except BadSignature as exc:
            raise ArtifactRejected(
                f"rotation {rotation.sequence}: {exc.message}", reason=RejectReason.BAD_ROTATION
            ) from exc
        trust = TrustSet.of(rotation.keys, sequence=rotation.sequence)
    return trust
