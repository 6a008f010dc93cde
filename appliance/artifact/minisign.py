"""minisign-compatible Ed25519 keys and signatures (sans-IO).

Operators verify our artifacts with stock ``minisign -V``; devices verify with this module, which needs only
``cryptography``. The formats follow jedisct1/minisign exactly:

- public key: ``"Ed" ‖ key_id(8) ‖ ed25519_pk(32)``, base64, after an untrusted comment line;
- secret key: ``"Ed" ‖ kdf_alg(2) ‖ "B2" ‖ salt(32) ‖ opslimit(u64le) ‖ memlimit(u64le) ‖
  [key_id(8) ‖ sk(64) ‖ blake2b-256(sig_alg ‖ key_id ‖ sk)(32)]`` where the bracketed 104 bytes are XORed
  with libsodium's ``crypto_pwhash_scryptsalsa208sha256`` output (scrypt with N, r, p picked from
  opslimit/memlimit) when ``kdf_alg == "Sc"``; ``kdf_alg == "\\0\\0"`` means unencrypted;
- signature: untrusted comment, base64(``"ED" ‖ key_id ‖ sig``) where ``sig`` signs BLAKE2b-512 of the
  message (``"Ed"``: legacy, signs the raw message), trusted comment line, base64 of the global signature
  over ``sig ‖ trusted_comment``.

Rules: no I/O, no clock, no ``os``; randomness (key id, seed, salt) comes in as arguments. Every parse
error is a :class:`~appliance.artifact.errors.BadKey` or :class:`~appliance.artifact.errors.BadSignature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.artifact.errors import BadKey, BadPassphrase, BadSignature

__all__ = [
    "KDF_INTERACTIVE",
    "KDF_SENSITIVE",
    "KdfParams",
    "PublicKey",
    "SecretKey",
    "Signature",
    "decode_public_key",
    "decode_secret_key",
    "decode_signature",
    "encode_public_key",
    "encode_secret_key",
    "encode_signature",
    "keypair_from_seed",
    "scrypt_params",
    "sign",
    "verify",
]

SIG_ALG = b"Ed"
SIG_ALG_HASHED = b"ED"
KDF_ALG_SCRYPT = b"Sc"
KDF_ALG_NONE = b"\x00\x00"
CHK_ALG = b"B2"
KEYNUM_SK_LEN = 8 + 64 + 32
SECRET_KEY_LEN = 2 + 2 + 2 + 32 + 8 + 8 + KEYNUM_SK_LEN
UNTRUSTED_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "


@attrs.frozen
class KdfParams:
    """libsodium's scryptsalsa208sha256 limits; they are stored in the key file, so any value works."""

    opslimit: int
    memlimit: int


#: minisign's defaults (N=2^20, r=8, p=1: 1 GiB, a few seconds): for the offline release key
KDF_SENSITIVE = KdfParams(opslimit=33554432, memlimit=1073741824)
#: libsodium's interactive limits (N=2^14: 16 MiB): for throwaway dev and test keys
KDF_INTERACTIVE = KdfParams(opslimit=524288, memlimit=16777216)


@attrs.frozen
class PublicKey:
    key_id: bytes = attrs.field(repr=lambda v: v[::-1].hex().upper())
    key: bytes = attrs.field(repr=False)

    @property
    def key_id_hex(self) -> str:
        """How minisign prints the id: the little-endian u64 in upper-case hex."""
        return self.key_id[::-1].hex().upper()


@attrs.frozen
class SecretKey:
    key_id: bytes
    seed: bytes = attrs.field(repr=False)

    @property
    def public(self) -> PublicKey:
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(key_id=self.key_id, key=raw)


@attrs.frozen
class Signature:
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes
    untrusted_comment: str = ""


def keypair_from_seed(key_id: bytes, seed: bytes) -> SecretKey:
    if len(key_id) != 8 or len(seed) != 32:
        raise BadKey("a key id is 8 bytes and an Ed25519 seed 32 bytes")
    return SecretKey(key_id=key_id, seed=seed)


# -- public keys -------------------------------------------------------------------------------------------


def encode_public_key(key: PublicKey) -> str:
    body = base64.b64encode(SIG_ALG + key.key_id + key.key).decode("ascii")
    return f"{UNTRUSTED_PREFIX}minisign public key {key.key_id_hex}\n{body}\n"


def decode_public_key(text: str) -> PublicKey:
    """Accept a whole ``.pub`` file or just its base64 line (as ``minisign -P`` takes it)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith(UNTRUSTED_PREFIX):
        lines = lines[1:]
    if len(lines) != 1:
        raise BadKey("a public key is one base64 line after an optional comment line")
    raw = _b64(lines[0], BadKey, "public key")
    if len(raw) != 42 or raw[:2] != SIG_ALG:
        raise BadKey("not a minisign Ed25519 public key")
    return PublicKey(key_id=raw[2:10], key=raw[10:])


# -- secret keys -------------------------------------------------------------------------------------------


def scrypt_params(kdf: KdfParams) -> tuple[int, int, int]:
    """(N, r, p) exactly as libsodium's ``pickparams`` derives them from opslimit/memlimit."""
    opslimit = max(kdf.opslimit, 32768)
    r = 8
    if opslimit < kdf.memlimit // 32:
        p = 1
        max_n = opslimit // (r * 4)
        n_log2 = _n_log2(max_n)
    else:
        max_n = kdf.memlimit // (r * 128)
        n_log2 = _n_log2(max_n)
        maxrp = min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF)
        p = maxrp // r
    return 1 << n_log2, r, p


def _n_log2(max_n: int) -> int:
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    return n_log2


def _keystream(passphrase: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    n, r, p = scrypt_params(kdf)
    return hashlib.scrypt(
        passphrase, salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2) + (1 << 20), dklen=KEYNUM_SK_LEN
    )


def _checksum(key_id: bytes, sk64: bytes) -> bytes:
    return hashlib.blake2b(SIG_ALG + key_id + sk64, digest_size=32).digest()


def encode_secret_key(
    key: SecretKey, *, passphrase: bytes | None, salt: bytes, kdf: KdfParams = KDF_SENSITIVE
) -> str:
    """The ``.key`` file. ``passphrase=None`` writes an unencrypted key (``minisign -W``)."""
    if len(salt) != 32:
        raise BadKey("the KDF salt is 32 bytes")
    sk64 = key.seed + key.public.key
    plain = key.key_id + sk64 + _checksum(key.key_id, sk64)
    if passphrase is None:
        kdf_alg, body = KDF_ALG_NONE, plain
    else:
        kdf_alg, body = KDF_ALG_SCRYPT, _xor(plain, _keystream(passphrase, salt, kdf))
    raw = (
        SIG_ALG
        + kdf_alg
        + CHK_ALG
        + salt
        + kdf.opslimit.to_bytes(8, "little")
        + kdf.memlimit.to_bytes(8, "little")
        + body
    )
    comment = "minisign encrypted secret key" if passphrase is not None else "minisign secret key"
    return f"{UNTRUSTED_PREFIX}{comment}\n{base64.b64encode(raw).decode('ascii')}\n"


def secret_key_is_encrypted(text: str) -> bool:
    return _secret_raw(text)[2:4] == KDF_ALG_SCRYPT


def decode_secret_key(text: str, passphrase: bytes | None) -> SecretKey:
    """Decrypt and check a ``.key`` file; a wrong passphrase fails the BLAKE2b checksum."""
    raw = _secret_raw(text)
    kdf_alg = raw[2:4]
    if raw[4:6] != CHK_ALG:
        raise BadKey("unsupported secret-key checksum algorithm")
    salt = raw[6:38]
    kdf = KdfParams(
        opslimit=int.from_bytes(raw[38:46], "little"), memlimit=int.from_bytes(raw[46:54], "little")
    )
    body = raw[54:]
    if kdf_alg == KDF_ALG_SCRYPT:
        if passphrase is None:
            raise BadPassphrase("the secret key is encrypted: a passphrase is needed")
        body = _xor(body, _keystream(passphrase, salt, kdf))
    elif kdf_alg != KDF_ALG_NONE:
        raise BadKey("unsupported secret-key KDF")
    key_id, sk64, chk = body[:8], body[8:72], body[72:]
    if not hmac.compare_digest(chk, _checksum(key_id, sk64)):
        raise BadPassphrase("wrong passphrase (or a corrupt secret key)")
    key = SecretKey(key_id=key_id, seed=sk64[:32])
    if key.public.key != sk64[32:]:
        raise BadKey("secret key does not match its embedded public key")
    return key


def _secret_raw(text: str) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith(UNTRUSTED_PREFIX):
        lines = lines[1:]
    if len(lines) != 1:
        raise BadKey("a secret key is one base64 line after a comment line")
    raw = _b64(lines[0], BadKey, "secret key")
    if len(raw) != SECRET_KEY_LEN or raw[:2] != SIG_ALG:
        raise BadKey("not a minisign Ed25519 secret key")
    return raw


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


# -- signatures --------------------------------------------------------------------------------------------


def sign(key: SecretKey, message: bytes, *, trusted_comment: str, untrusted_comment: str = "") -> Signature:
    """Sign BLAKE2b-512(message) as ``minisign -S`` does by default (``ED``)."""
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise BadSignature("a trusted comment is one line")
    private = Ed25519PrivateKey.from_private_bytes(key.seed)
    sig = private.sign(hashlib.blake2b(message).digest())
    global_sig = private.sign(sig + trusted_comment.encode("utf-8"))
    return Signature(
        algorithm=SIG_ALG_HASHED,
        key_id=key.key_id,
        signature=sig,
        trusted_comment=trusted_comment,
        global_signature=global_sig,
        untrusted_comment=untrusted_comment or f"signature from appliance secret key {key.public.key_id_hex}",
    )


def encode_signature(sig: Signature) -> str:
    line2 = base64.b64encode(sig.algorithm + sig.key_id + sig.signature).decode("ascii")
    line4 = base64.b64encode(sig.global_signature).decode("ascii")
    return f"{UNTRUSTED_PREFIX}{sig.untrusted_comment}\n{line2}\n{TRUSTED_PREFIX}{sig.trusted_comment}\n{line4}\n"


def decode_signature(text: str) -> Signature:
    lines = text.splitlines()
    if len(lines) < 4 or not lines[0].startswith(UNTRUSTED_PREFIX) or not lines[2].startswith(TRUSTED_PREFIX):
        raise BadSignature("not a minisign signature file")
    raw = _b64(lines[1].strip(), BadSignature, "signature")
    if len(raw) != 74 or raw[:2] not in (SIG_ALG, SIG_ALG_HASHED):
        raise BadSignature("unsupported signature algorithm")
    global_sig = _b64(lines[3].strip(), BadSignature, "global signature")
    if len(global_sig) != 64:
        raise BadSignature("bad global signature length")
    return Signature(
        algorithm=raw[:2],
        key_id=raw[2:10],
        signature=raw[10:],
        trusted_comment=lines[2][len(TRUSTED_PREFIX) :],
        global_signature=global_sig,
        untrusted_comment=lines[0][len(UNTRUSTED_PREFIX) :],
    )


def verify(public: PublicKey, message: bytes, sig: Signature) -> str:
    """Check both signatures as ``minisign -V`` does; return the (now authenticated) trusted comment."""
    if sig.key_id != public.key_id:
        raise BadSignature(
            f"signed by key {sig.key_id[::-1].hex().upper()}, not by {public.key_id_hex}",
        )
    verifier = Ed25519PublicKey.from_public_bytes(public.key)
    signed = hashlib.blake2b(message).digest() if sig.algorithm == SIG_ALG_HASHED else message
    try:
        verifier.verify(sig.signature, signed)
    except InvalidSignature:
        raise BadSignature("signature verification failed") from None
    try:
        verifier.verify(sig.global_signature, sig.signature + sig.trusted_comment.encode("utf-8"))
    except InvalidSignature:
        raise BadSignature("trusted comment signature verification failed") from None
    return sig.trusted_comment


def _b64(text: str, error: type[BadKey] | type[BadSignature], what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what} is not valid base64") from None
