"""``appliance artifact keygen | sign | build | verify | rotate``: the release operator's tools.

The lead wires :func:`add_artifact_commands` into ``appliance/cli/components.py``; each parser sets
``handler(args) -> exit code``. Passphrases come from ``--passphrase-file``, else the environment variable
``APPLIANCE_SIGNING_PASSPHRASE``, else a prompt (tty) or one line of stdin (as minisign reads them).
Heavy imports (cryptography, zstandard) stay inside the handlers so they cost nothing at start.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError, ExitCode

__all__ = ["add_artifact_commands", "main"]

PASSPHRASE_ENV = "APPLIANCE_SIGNING_PASSPHRASE"


def add_artifact_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``artifact`` and its subcommands on the top-level ``subparsers``."""
    artifact = subparsers.add_parser("artifact", help="sign, build and verify release artifacts")
    sub = artifact.add_subparsers(dest="artifact_command", metavar="SUBCOMMAND")
    sub.required = True

    keygen = sub.add_parser("keygen", help="generate a minisign-compatible Ed25519 key pair (offline)")
    keygen.add_argument("--secret-key", required=True, help="where to write the (encrypted) secret key")
    keygen.add_argument("--public-key", required=True, help="where to write the public key")
    keygen.add_argument("--passphrase-file", help="read the passphrase from this file (first line)")
    keygen.add_argument("--no-passphrase", action="store_true", help="unencrypted key (tests only)")
    keygen.add_argument(
        "--kdf",
        choices=("sensitive", "interactive"),
        default="sensitive",
        help="scrypt cost: sensitive = minisign's default (1 GiB), interactive = 16 MiB (dev keys)",
    )
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(handler=_cmd_keygen)

    sign = sub.add_parser("sign", help="sign a file as `minisign -S` does (writes FILE.minisig)")
    sign.add_argument("file")
    sign.add_argument("--secret-key", required=True)
    sign.add_argument("--passphrase-file")
    sign.add_argument("--trusted-comment", help="default: file:<name>")
    sign.set_defaults(handler=_cmd_sign)

    build = sub.add_parser("build", help="bundle dir -> archive + manifest + signature in OUT")
    build.add_argument(
        "--bundle", default="dist/appliance", help="the PyInstaller onedir (default dist/appliance)"
    )
    build.add_argument("--out", default="dist", help="output directory (default dist)")
    build.add_argument("--secret-key", required=True)
    build.add_argument("--passphrase-file")
    build.add_argument("--name", default="appliance")
    build.add_argument("--version", dest="artifact_version", help="default: this package's version")
    build.add_argument("--arch", help="default: this machine's (platform.machine())")
    build.add_argument(
        "--min-version", default="0", help="oldest installed version that may update (default 0)"
    )
    build.add_argument(
        "--valid-days", type=int, default=180, help="expiry after SOURCE_DATE_EPOCH (default 180)"
    )
    build.add_argument("--source-date-epoch", type=int, help="default: $SOURCE_DATE_EPOCH (required)")
    build.set_defaults(handler=_cmd_build)

    verify = sub.add_parser("verify", help="check signature, expiry, versions and archive of a release")
    verify.add_argument(
        "manifest", help="the .manifest.json (signature: MANIFEST.minisig unless --signature)"
    )
    verify.add_argument("--signature")
    verify.add_argument("--archive", help="default: the archive named in the manifest, next to it")
    verify.add_argument(
        "--pubkey", action="append", default=[], help="trusted public key (file or base64); default: embedded"
    )
    verify.add_argument(
        "--rotation", action="append", default=[], help="signed key-rotation manifest (FILE + FILE.minisig)"
    )
    verify.add_argument(
        "--installed-version", help="the version this device runs (enables min_version check)"
    )
    verify.add_argument(
        "--floor", help="refuse versions below this (anti-rollback; default: installed version)"
    )
    verify.add_argument("--allow-downgrade", action="store_true", help="operator-approved rollback")
    verify.add_argument("--arch", help="require this architecture")
    verify.add_argument("--now", help="the time to check expiry against (epoch seconds or RFC 3339 Z)")
    verify.add_argument("--shallow", action="store_true", help="skip the per-file check inside the archive")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(handler=_cmd_verify)

    rotate = sub.add_parser("rotate", help="write a key-rotation manifest signed by a current key")
    rotate.add_argument("--secret-key", required=True, help="a currently trusted secret key")
    rotate.add_argument("--passphrase-file")
    rotate.add_argument("--new-pubkey", action="append", required=True, help="the complete new key set")
    rotate.add_argument("--sequence", type=int, required=True, help="higher than every earlier rotation")
    rotate.add_argument("--note", default="")
    rotate.add_argument("--out", required=True, help="rotation manifest path (signature: OUT.minisig)")
    rotate.add_argument(
        "--source-date-epoch", type=int, help="created time (default: $SOURCE_DATE_EPOCH or now)"
    )
    rotate.set_defaults(handler=_cmd_rotate)


# -- helpers -----------------------------------------------------------------------------------------------


def _read_passphrase(args: argparse.Namespace, *, confirm: bool = False) -> bytes:
    path = getattr(args, "passphrase_file", None)
    if path:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return (lines[0] if lines else "").encode("utf-8")
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env.encode("utf-8")
    if sys.stdin.isatty():
        first = getpass.getpass("Passphrase: ")
        if confirm and getpass.getpass("Passphrase (again): ") != first:
            raise ConfigError("the passphrases differ")
        return first.encode("utf-8")
    return sys.stdin.readline().rstrip("\r\n").encode("utf-8")


def _load_secret_key(args: argparse.Namespace) -> Any:
    from appliance.artifact import minisign

    text = Path(args.secret_key).read_text(encoding="ascii")
    passphrase = _read_passphrase(args) if minisign.secret_key_is_encrypted(text) else None
    return minisign.decode_secret_key(text, passphrase)


def _source_date_epoch(explicit: int | None, *, required: bool) -> int:
    if explicit is not None:
        return explicit
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            return int(env)
        except ValueError:
            raise ConfigError(f"SOURCE_DATE_EPOCH is not an integer: {env!r}") from None
    if required:
        raise ConfigError("set SOURCE_DATE_EPOCH (or --source-date-epoch): builds must not read the clock")
    return int(time.time())


def _write_new(path: str, data: str, *, mode: int, force: bool) -> None:
    if os.path.exists(path) and not force:
        raise ConfigError(f"{path} exists (use --force to overwrite)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path + ".part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(data)
    os.replace(path + ".part", path)


# -- handlers ----------------------------------------------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace) -> int:
    from appliance.artifact import minisign

    passphrase = None if args.no_passphrase else _read_passphrase(args, confirm=True)
    if passphrase == b"":
        raise ConfigError("empty passphrase (use --no-passphrase for an unencrypted test key)")
    kdf = minisign.KDF_SENSITIVE if args.kdf == "sensitive" else minisign.KDF_INTERACTIVE
    key = minisign.keypair_from_seed(os.urandom(8), os.urandom(32))
    _write_new(
        args.secret_key,
        minisign.encode_secret_key(key, passphrase=passphrase, salt=os.urandom(32), kdf=kdf),
        mode=0o600,
        force=args.force,
    )
    _write_new(args.public_key, minisign.encode_public_key(key.public), mode=0o644, force=args.force)
    print(
        f"key id {key.public.key_id_hex}; public key: {minisign.encode_public_key(key.public).splitlines()[1]}"
    )
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from appliance.artifact.release import sign_file

    key = _load_secret_key(args)
    comment = args.trusted_comment or f"file:{os.path.basename(args.file)}"
    out = sign_file(key, args.file, comment)
    print(out)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from appliance import __version__
    from appliance.artifact.release import build_release

    sde = _source_date_epoch(args.source_date_epoch, required=True)
    key = _load_secret_key(args)
    if not os.path.isdir(args.bundle):
        raise ConfigError(f"no bundle at {args.bundle}: run image/build-bundle.sh first")
    files, manifest = build_release(
        args.bundle,
        args.out,
        key=key,
        name=args.name,
        version=args.artifact_version or __version__,
        arch=args.arch or platform.machine(),
        source_date_epoch=sde,
        valid_days=args.valid_days,
        min_version=args.min_version,
    )
    print(f"{files.archive}  sha256 {manifest.archive.sha256}  {manifest.archive.size} bytes")
    print(files.manifest)
    print(files.signature)
    return 0


def _trust(args: argparse.Namespace) -> Any:
    from appliance.artifact.keys import TrustSet, apply_rotations
    from appliance.artifact.trusted_keys import EMBEDDED_PUBLIC_KEYS

    if args.pubkey:
        texts = [Path(k).read_text(encoding="ascii") if os.path.exists(k) else k for k in args.pubkey]
        trust = TrustSet.of(texts)
    else:
        trust = TrustSet.of(EMBEDDED_PUBLIC_KEYS)
    rotations = [
        (Path(r).read_bytes(), Path(f"{r}.minisig").read_text(encoding="utf-8")) for r in args.rotation
    ]
    return apply_rotations(trust, rotations)


def _parse_now(text: str | None) -> int:
    if text is None:
        return int(time.time())
    if text.isdigit():
        return int(text)
    from appliance.artifact.manifest import parse_time

    return parse_time(text)


def _cmd_verify(args: argparse.Namespace) -> int:
    from appliance.artifact.errors import ArtifactRejected
    from appliance.artifact.policy import UpdateContext
    from appliance.artifact.release import verify_release

    ctx = UpdateContext(
        now=_parse_now(args.now),
        installed_version=args.installed_version,
        floor_version=args.floor,
        arch=args.arch,
        allow_downgrade=args.allow_downgrade,
    )
    try:
        manifest = verify_release(
            _trust(args),
            args.manifest,
            ctx,
            signature_path=args.signature,
            archive_path=args.archive,
            deep=not args.shallow,
        )
    except ArtifactRejected as exc:
        if args.json:
            print(
                json.dumps(
                    {"ok": False, "reason": str(exc.reason), "message": exc.one_line()}, sort_keys=True
                )
            )
        raise
    if args.json:
        out = {
            "ok": True,
            "name": manifest.name,
            "version": manifest.version,
            "arch": manifest.arch,
            "archive_sha256": manifest.archive.sha256,
            "files": len(manifest.files),
        }
        print(json.dumps(out, sort_keys=True))
    else:
        print(
            f"OK {manifest.name} {manifest.version} {manifest.arch}: signature, expiry, versions, archive "
            f"and {len(manifest.files)} files verified"
        )
    return int(ExitCode.OK)


def _cmd_rotate(args: argparse.Namespace) -> int:
    from appliance.artifact import minisign
    from appliance.artifact.keys import KeyRotation, serialise_rotation
    from appliance.artifact.release import sign_file

    key = _load_secret_key(args)
    keys = []
    for item in args.new_pubkey:
        text = Path(item).read_text(encoding="ascii") if os.path.exists(item) else item
        keys.append(minisign.encode_public_key(minisign.decode_public_key(text)).splitlines()[1])
    rotation = KeyRotation(
        sequence=args.sequence,
        created=_source_date_epoch(args.source_date_epoch, required=False),
        keys=tuple(keys),
        note=args.note,
    )
    Path(args.out).write_bytes(serialise_rotation(rotation))
    sign_file(key, args.out, f"appliance-key-rotation sequence={rotation.sequence}")
    print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m appliance.artifact.cli ...``: the same commands without the rest of the CLI."""
    from appliance.errors import ApplianceError

    parser = argparse.ArgumentParser(prog="appliance")
    add_artifact_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ApplianceError as exc:
        print(f"appliance: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
