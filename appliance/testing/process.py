"""Run ``appliance serve`` as a real subprocess on a free loopback port, for integration tests and soak."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs

__all__ = ["ServeProcess", "free_port", "start_serve", "wait_http_ok"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _appliance_exe() -> str:
    exe = shutil.which("appliance", path=str(Path(sys.executable).parent))
    return exe or "appliance"


def wait_http_ok(port: int, path: str = "/ready", timeout_s: float = 20.0) -> dict[str, Any]:
    """Poll ``GET path`` until it answers 200 (start-up only; never used as a timing measurement)."""
    import http.client

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                doc = json.loads(body)
                return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError) as exc:
            last = exc
        finally:
            conn.close()
        time.sleep(0.02)
    raise TimeoutError(f"appliance did not answer {path} on port {port} within {timeout_s}s: {last}")


@attrs.define
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)


def start_serve(
    data_dir: Path,
    *,
    token: str = "test-token-0123456789",
    port: int | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
    exe: str | None = None,
) -> ServeProcess:
    port = port if port is not None else free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"serve-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    full_env.update({"APPLIANCE_GATEWAY_TOKEN": token, "APPLIANCE_LOG_FORMAT": "json"})
    full_env.update(env or {})
    cmd = [
        exe or _appliance_exe(),
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *(extra_args or []),
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=log)
    serve = ServeProcess(proc, port, token, data_dir, log_path)
    if wait:
        try:
            wait_http_ok(port)
        except TimeoutError:
            serve.kill()
            raise TimeoutError(f"serve did not start; log:\n{serve.log_text()}") from None
    return serve
