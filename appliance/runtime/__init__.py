"""Runtime files of an installed appliance: data dir layout, gateway token, run-state file.

Rules: the data dir is 0700; secrets (the gateway token) are 0600 and written atomically; nothing here
logs a secret value, only where it lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import attrs

from appliance.config.settings import Settings
from appliance.errors import ConfigError

__all__ = [
    "DataPaths",
    "TokenSource",
    "ensure_data_dir",
    "ensure_gateway_token",
    "probe_ready",
    "read_run_state",
    "remove_run_state",
    "write_run_state",
]


@attrs.frozen
class DataPaths:
    root: Path

    @classmethod
    def of(cls, settings: Settings) -> DataPaths:
        return cls(Path(settings.data_dir).expanduser().absolute())

    @property
    def database(self) -> Path:
        return self.root / "appliance.sqlite3"

    @property
    def token_file(self) -> Path:
        return self.root / "gateway.token"

    @property
    def run_state(self) -> Path:
        return self.root / "run" / "gateway.json"


@attrs.frozen
class TokenSource:
    token: str
    origin: str  # "config", "file" or "generated"
    path: Path | None


def ensure_data_dir(paths: DataPaths) -> None:
    """Create the data dir (0700). Raises ConfigError when it cannot be created."""
    try:
        paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (paths.root / "run").mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create data dir: {exc.strerror}", source=str(paths.root), key="data_dir"
        ) from None


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_gateway_token(settings: Settings, paths: DataPaths) -> TokenSource | None:
    """The configured token, else the stored one, else a newly generated one stored 0600 in the data dir.

    Returns None when auth is off (``gateway.auth = "none"``).
    """
    if settings.gateway.auth == "none":
        return None
    if settings.gateway.token:
        return TokenSource(settings.gateway.token, "config", None)
    path = paths.token_file
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    except OSError as exc:
        raise ConfigError(f"cannot read token file: {exc.strerror}", source=str(path)) from None
    if stored:
        return TokenSource(stored, "file", path)
    token = secrets.token_urlsafe(32)
    try:
        _write_private(path, token + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write token file: {exc.strerror}", source=str(path)) from None
    return TokenSource(token, "generated", path)


def write_run_state(paths: DataPaths, state: dict[str, Any]) -> None:
    _write_private(paths.run_state, json.dumps(state, sort_keys=True))


def read_run_state(paths: DataPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.run_state.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return data


def remove_run_state(paths: DataPaths) -> None:
    with contextlib.suppress(FileNotFoundError):
        paths.run_state.unlink()


def probe_ready(port: int) -> dict[str, Any] | None:
    """``GET /ready`` of the gateway on this machine; None when it does not answer (2 s timeout)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/ready")
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"null")
        return body if isinstance(body, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        conn.close()
