"""minisign formats: round trips, tamper detection, and interop with Debian's stock ``minisign``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.artifact import minisign
from appliance.artifact.errors import BadKey, BadPassphrase, BadSignature
from tests.artifact.keyring import MINISIGN, make_key, needs_minisign

FAST = minisign.KDF_INTERACTIVE
SALT = b"s" * 32


def test_scrypt_params_match_libsodium_pickparams() -> None:
    # values libsodium derives for its named limits (minisign uses SENSITIVE)
    assert minisign.scrypt_params(minisign.KDF_SENSITIVE) == (1 << 20, 8, 1)
    assert minisign.scrypt_params(minisign.KDF_INTERACTIVE) == (1 << 14, 8, 1)
    assert minisign.scrypt_params(minisign.KdfParams(opslimit=1 << 20, memlimit=1 << 30)) == (1 << 15, 8, 1)


def test_public_key_round_trip_and_id_format() -> None:
    key = make_key(7)
    text = minisign.encode_public_key(key.public)
    assert text.startswith("untrusted comment: minisign public key 0707070707070707\nRW")
    assert minisign.decode_public_key(text) == key.public
    assert minisign.decode_public_key(text.splitlines()[1]) == key.public


@pytest.mark.parametrize("passphrase", [b"correct horse", None])
def test_secret_key_round_trip(passphrase: bytes | None) -> None:
    key = make_key(3)
    text = minisign.encode_secret_key(key, passphrase=passphrase, salt=SALT, kdf=FAST)
    assert minisign.secret_key_is_encrypted(text) is (passphrase is not None)
    assert minisign.decode_secret_key(text, passphrase) == key


def test_wrong_passphrase_fails_the_checksum() -> None:
    text = minisign.encode_secret_key(make_key(3), passphrase=b"right", salt=SALT, kdf=FAST)
    with pytest.raises(BadPassphrase):
        minisign.decode_secret_key(text, b"wrong")
    with pytest.raises(BadPassphrase):
        minisign.decode_secret_key(text, None)


def test_garbage_keys_are_bad_keys() -> None:
    for text in ("", "untrusted comment: x\nnot base64!", "untrusted comment: x\nAAAA"):
        with pytest.raises(BadKey):
            minisign.decode_public_key(text)
        with pytest.raises(BadKey):
            minisign.decode_secret_key(text, None)


def test_sign_verify_and_tamper() -> None:
    key = make_key(1)
    sig = minisign.sign(key, b"payload", trusted_comment="release 1")
    decoded = minisign.decode_signature(minisign.encode_signature(sig))
    assert decoded == sig
    assert minisign.verify(key.public, b"payload", decoded) == "release 1"
    with pytest.raises(BadSignature):
        minisign.verify(key.public, b"payloaD", decoded)
    forged = minisign.Signature(
        decoded.algorithm, decoded.key_id, decoded.signature, "release 2", decoded.global_signature
    )
    with pytest.raises(BadSignature, match="trusted comment"):
        minisign.verify(key.public, b"payload", forged)
    with pytest.raises(BadSignature, match="not by"):
        minisign.verify(make_key(2).public, b"payload", decoded)


def test_signatures_are_deterministic() -> None:
    key = make_key(1)
    one = minisign.encode_signature(minisign.sign(key, b"x", trusted_comment="t"))
    assert one == minisign.encode_signature(minisign.sign(key, b"x", trusted_comment="t"))


def test_multiline_trusted_comment_is_refused() -> None:
    with pytest.raises(BadSignature):
        minisign.sign(make_key(1), b"x", trusted_comment="a\nb")


@needs_minisign
def test_stock_minisign_verifies_our_signature(tmp_path: Path) -> None:
    key = make_key(4)
    (tmp_path / "k.pub").write_text(minisign.encode_public_key(key.public))
    (tmp_path / "m").write_bytes(b"hello minisign\n")
    sig = minisign.sign(key, b"hello minisign\n", trusted_comment="appliance test")
    (tmp_path / "m.minisig").write_text(minisign.encode_signature(sig))
    out = subprocess.run(
        [str(MINISIGN), "-V", "-p", str(tmp_path / "k.pub"), "-m", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Trusted comment: appliance test" in out.stdout
    (tmp_path / "m").write_bytes(b"hello minisigN\n")
    bad = subprocess.run(
        [str(MINISIGN), "-V", "-p", str(tmp_path / "k.pub"), "-m", str(tmp_path / "m")],
        capture_output=True,
        check=False,
    )
    assert bad.returncode != 0


@needs_minisign
def test_stock_minisign_signs_with_our_encrypted_key(tmp_path: Path) -> None:
    key = make_key(5)
    (tmp_path / "k.key").write_text(minisign.encode_secret_key(key, passphrase=b"pw", salt=SALT, kdf=FAST))
    (tmp_path / "m").write_bytes(b"signed by minisign\n")
    out = subprocess.run(
        [
            str(MINISIGN),
            "-S",
            "-s",
            str(tmp_path / "k.key"),
            "-m",
            str(tmp_path / "m"),
            "-t",
            "from minisign",
        ],
        input="pw\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    sig = minisign.decode_signature((tmp_path / "m.minisig").read_text())
    assert minisign.verify(key.public, b"signed by minisign\n", sig) == "from minisign"


@needs_minisign
@pytest.mark.slow
def test_we_decrypt_a_key_made_by_stock_minisign(tmp_path: Path) -> None:
    """minisign -G always uses the sensitive KDF (1 GiB scrypt): a few seconds each side."""
    out = subprocess.run(
        [str(MINISIGN), "-G", "-p", str(tmp_path / "g.pub"), "-s", str(tmp_path / "g.key")],
        input="pw2\npw2\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    secret = minisign.decode_secret_key((tmp_path / "g.key").read_text(), b"pw2")
    assert secret.public == minisign.decode_public_key((tmp_path / "g.pub").read_text())
