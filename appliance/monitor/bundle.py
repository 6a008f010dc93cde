"""``appliance support-bundle``: one ``.tar.zst`` an operator can attach to an incident report.

Contents (each only when present; ``manifest.json`` lists what is in and why anything is missing):
``config.json`` (effective settings, redacted), ``status.json`` and ``doctor.json`` (the commands'
``--json`` output), ``stats.json`` (``appliance stats``), ``logs/`` (tails of log files in the data dir and
of the systemd journal), ``ledger/`` (tail of the defender's quarantine ledger), ``slots/`` (small text
files describing the installed release slots), ``bench/latest.json`` (the last benchmark snapshot).

Rules: secrets never leave the machine. Three layers make sure: secret files (the token file, keys,
the database) are never read; JSON goes through :func:`appliance.log.redact`; and every member's text
is finally scrubbed of each known secret value (:func:`scrub`), wherever it appears. The archive is
written 0600 and atomically.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from appliance.log import REDACTED, redact

__all__ = ["build_bundle", "known_secrets", "scrub", "scrub_log_text"]

LOG_TAIL_BYTES = 1_048_576
LEDGER_TAIL_LINES = 500
SLOT_FILE_MAX_BYTES = 65_536
COMMAND_TIMEOUT_S = 30.0
#: file names never read into a bundle, whatever directory they are in
_NEVER = ("token", "secret", "key", "password", ".sqlite", ".db", ".pem", ".minisign")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value (longest first) and mask ``Bearer xyz``."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    result = redact(text)
    return result if isinstance(result, str) else text


def scrub_log_text(text: str, secrets: Iterable[str]) -> str:
    """Redact a log: JSON lines through :func:`redact`, every line through :func:`scrub`."""
    wanted = list(secrets)
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("{"):
            with contextlib.suppress(ValueError):
                line = json.dumps(redact(json.loads(stripped)), sort_keys=True)
        out.append(scrub(line, wanted))
    return "\n".join(out) + ("\n" if out else "")


def _secret_fields(obj: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if attrs.has(type(value)):
            yield from _secret_fields(value, f"{prefix}{field.name}.")
        elif field.metadata.get("secret") and isinstance(value, str) and value:
            yield f"{prefix}{field.name}", value


def known_secrets(settings: Any, token_file: Path | None, environ: Mapping[str, str]) -> list[str]:
    """Every secret value we can know of: settings fields marked secret, the token file, secret-like env."""
    found = [value for _, value in _secret_fields(settings)]
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError:
            token = ""
        if token:
            found.append(token)
    for name, value in environ.items():
        if any(word in name.upper() for word in ("TOKEN", "SECRET", "KEY", "PASSWORD")) and value:
            found.append(value)
    return found


def redacted_config(settings: Any) -> dict[str, Any]:
    """Settings as JSON with secret-marked fields and credential-like keys replaced."""
    doc = attrs.asdict(settings)
    for dotted, _ in _secret_fields(settings):
        section = doc
        *parents, leaf = dotted.split(".")
        for part in parents:
            section = section[part]
        section[leaf] = REDACTED
    result = redact(doc)
    return result if isinstance(result, dict) else {}


# ---- shell -------------------------------------------------------------------------------------------


def _appliance_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "appliance"]


def _run_json(args: list[str], env: Mapping[str, str]) -> tuple[Any, str | None]:
    """Run ``appliance <args>``; (parsed stdout, None) or (None, why not)."""
    try:
        done = subprocess.run(
            [*_appliance_command(), *args],
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            env=dict(env),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    try:
        return json.loads(done.stdout), None
    except ValueError:
        return None, f"exit {done.returncode}, no JSON on stdout"


def _tail_bytes(path: Path, limit: int) -> str:
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - limit))
        data = fh.read()
    if size > limit:  # drop the partial first line
        data = data.split(b"\n", 1)[-1]
    return data.decode("utf-8", "replace")


def _allowed(path: Path) -> bool:
    name = path.name.lower()
    return not any(word in name for word in _NEVER)


def _journal(unit: str) -> str | None:
    if shutil.which("journalctl") is None:
        return None
    try:
        done = subprocess.run(
            ["journalctl", "-u", unit, "-n", "2000", "--no-pager", "-o", "cat"],
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.decode("utf-8", "replace")
    return text if done.returncode == 0 and text.strip() and "No entries" not in text else None


def build_bundle(
    output: Path,
    *,
    settings: Any,
    data_dir: Path,
    token_file: Path,
    cli_args: list[str],
    stats: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None = None,
    unit: str = "appliance",
) -> dict[str, Any]:
    """Write the bundle to ``output``; return its manifest. ``cli_args`` select the same config
    (``--profile``/``--config``/``--data-dir``) for the ``status``/``doctor`` subprocesses."""
    import zstandard

    env = dict(os.environ if environ is None else environ)
    secrets = known_secrets(settings, token_file, env)
    members: dict[str, str] = {}
    missing: dict[str, str] = {}

    def put(name: str, text: str) -> None:
        members[name] = scrub(text, secrets)

    def put_json(name: str, value: Any) -> None:
        put(name, json.dumps(redact(value), indent=2, sort_keys=True) + "\n")

    put_json("config.json", redacted_config(settings))
    for name, args in (("status", ["status", "--json"]), ("doctor", ["doctor", "--json"])):
        value, why = _run_json([*args, *cli_args], env)
        if value is None:
            missing[f"{name}.json"] = why or "no output"
        else:
            put_json(f"{name}.json", value)
    if stats is not None:
        put_json("stats.json", stats)
    else:
        missing["stats.json"] = "not collected"

    logs = sorted(
        {p for pattern in ("*.log", "*.log.*", "logs/*") for p in data_dir.glob(pattern) if p.is_file()}
    )
    for path in logs:
        if _allowed(path) and not path.name.endswith((".gz", ".zst")):
            members[f"logs/{path.name}"] = scrub_log_text(_tail_bytes(path, LOG_TAIL_BYTES), secrets)
    journal = _journal(unit)
    if journal is not None:
        members["logs/journal.txt"] = scrub_log_text(journal, secrets)
    if not logs and journal is None:
        missing["logs/"] = "no log files in the data dir and no journal entries"

    ledgers = sorted(
        {p for pattern in ("defender/*.jsonl", "**/*ledger*.jsonl") for p in data_dir.glob(pattern)}
    )
    ledgers = [p for p in ledgers if p.is_file() and _allowed(p)]
    for path in ledgers[:4]:
        lines = _tail_bytes(path, LOG_TAIL_BYTES).splitlines()[-LEDGER_TAIL_LINES:]
        members[f"ledger/{path.name}"] = scrub_log_text("\n".join(lines), secrets)
    if not ledgers:
        missing["ledger/"] = "no quarantine ledger"

    slots_dir = data_dir / "slots"
    if slots_dir.is_dir():
        for path in sorted(slots_dir.rglob("*")):
            if path.is_file() and _allowed(path) and path.stat().st_size <= SLOT_FILE_MAX_BYTES:
                text = path.read_bytes().decode("utf-8", "replace")
                put(f"slots/{path.relative_to(slots_dir)}", text)
        members["slots/LISTING.txt"] = "\n".join(
            str(p.relative_to(slots_dir)) for p in sorted(slots_dir.rglob("*"))
        )
    else:
        missing["slots/"] = "no slots directory"

    bench = data_dir / "bench" / "latest.json"
    if bench.is_file():
        put("bench/latest.json", bench.read_text(errors="replace"))
    else:
        missing["bench/latest.json"] = "no benchmark snapshot (bench/run_all.py --data-dir)"

    created = int(time.time())
    manifest: dict[str, Any] = {
        "createdAt": created,
        "members": sorted(members),
        "missing": missing,
        "secretsScrubbed": len(set(secrets)),
    }
    members["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, text in sorted(members.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"support-bundle/{name}")
            info.size = len(data)
            info.mtime = created
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    compressed = zstandard.ZstdCompressor(level=10).compress(raw.getvalue())
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, compressed)
    finally:
        os.close(fd)
    os.replace(tmp, output)
    return manifest
