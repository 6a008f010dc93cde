"""Drive the REAL `openclaw` npm CLI (pinned 2026.9.6) as a client of a gateway under test.

The CLI is installed by `tests/tools/install-openclaw.sh` into a user cache dir (never the repo);
see `install_openclaw()`. `OpenClawCLI` runs it in a sealed environment:

* a throwaway `HOME`, `OPENCLAW_STATE_DIR`, `OPENCLAW_CONFIG_PATH`, `TMPDIR` and `XDG_*` under one
  work dir, so nothing of the developer's own OpenClaw setup is read or written;
* every inherited `OPENCLAW_*` / `NODE_OPTIONS` variable is dropped;
* a client config file that points the CLI's log file into the work dir (by default OpenClaw logs
  to `/tmp/openclaw/openclaw-YYYY-MM-DD.log`) and turns off update checks; plus
  `OPENCLAW_NO_AUTO_UPDATE=1`, `DO_NOT_TRACK=1`, `OPENCLAW_DISABLE_BONJOUR=1`, `NO_COLOR=1` and
  `NO_PROXY` for loopback;
* `NODE_COMPILE_CACHE` pointed into the install dir (shared, speeds up start-up);
* a subprocess timeout on every call (`OpenClawTimeout` if it fires; the process is killed).

What `openclaw gateway call <method> --url U --token T --json [--params JSON]` does
(observed with openclaw@2026.9.6):

* It opens one WebSocket to U, answers `connect.challenge` with a `connect` request
  (client.id "cli", mode "cli", no device block, least-privilege scopes per method, all
  operator scopes for a method it does not know), sends ONE request for `<method>` and closes.
  `--params` must be a JSON object; without it the CLI sends `"params": {}`.
* Success: exit code 0, stdout is the response `payload` pretty-printed as JSON (2-space indent),
  byte-for-byte what the gateway sent in `res.payload` (e.g. `null` for last-heartbeat). stderr
  is empty.
* Gateway error (`res.ok == false`, including a failed `connect` such as a bad token): exit code 1,
  stdout is
  `{"ok": false, "error": {"type": "gateway_request_error", "code", "message", "details"?, "retryable"}}`
  (`details` only when the gateway sent some; `retryable` defaults to false). For a failed
  connect, stderr also gets `gateway connect failed: GatewayClientRequestError: <message>`.
* Transport failure (nothing listening, socket closed early): exit code 1, stdout is
  `{"ok": false, "error": {"type": "gateway_transport_error", "kind": "closed", "message", "reason"},
  "gateway": {"url", "urlSource": "cli --url"}}`.
* Without `--json`, stdout starts with a `Gateway call: <method>` line followed by the JSON.
* `--expect-final` makes the CLI wait for the second `res` of two-phase methods (`agent`);
  `--timeout` (ms, default 10000) bounds the whole call.
* Wall time is ~2-3 s per call, nearly all of it Node start-up.

`openclaw health [--json]` and friends take the target from `OPENCLAW_GATEWAY_URL` /
`OPENCLAW_GATEWAY_TOKEN` (pass them in `env_extra` to `run()`). `openclaw status` does NOT
connect to a custom URL (it reports it "unreachable"); use `call("status", ...)` instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "tests" / "tools" / "install-openclaw.sh"
OPENCLAW_VERSION = "2026.9.6"

_DROP_ENV_PREFIXES = ("OPENCLAW_", "CLAWDBOT_", "NODE_OPTIONS", "NODE_PATH", "NPM_CONFIG_", "npm_")


class OpenClawInstallError(RuntimeError):
    """The install script failed; the message carries its output."""


class OpenClawTimeout(AssertionError):
    """The CLI did not finish within the subprocess timeout (it has been killed)."""


def install_openclaw(timeout_s: float = 900.0) -> Path:
    """Run the idempotent install script and return the path of the `openclaw` wrapper."""
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OpenClawInstallError(f"{INSTALL_SCRIPT} timed out after {timeout_s}s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise OpenClawInstallError(
            f"{INSTALL_SCRIPT} failed (rc={proc.returncode})\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    path = Path(lines[-1])
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise OpenClawInstallError(f"{INSTALL_SCRIPT} printed {path!s}, which is not an executable file")
    return path


@dataclass(frozen=True)
class CallResult:
    """Outcome of one CLI run. `json` is stdout parsed as JSON, or None if it is not JSON.

    Note that a successful call whose payload is JSON `null` (e.g. last-heartbeat) also has
    `json is None`; check `rc` and `stdout.strip() == "null"` for that case.
    """

    rc: int
    stdout: str
    stderr: str
    json: Any
    argv: tuple[str, ...] = field(default=(), compare=False)
    duration_s: float = field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def error(self) -> dict[str, Any] | None:
        """The `error` object of a failed call's JSON output, if any."""
        if isinstance(self.json, dict) and self.json.get("ok") is False:
            err = self.json.get("error")
            return err if isinstance(err, dict) else None
        return None

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nrc={self.rc} ({self.duration_s:.1f}s)\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def _parse_json(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


class OpenClawCLI:
    """The real `openclaw` CLI bound to one throwaway work dir."""

    def __init__(self, executable: Path, workdir: Path, *, default_timeout_s: float = 60.0) -> None:
        self.executable = Path(executable)
        self.workdir = Path(workdir)
        self.default_timeout_s = default_timeout_s
        self.home = self.workdir / "home"
        self.state_dir = self.workdir / "state"
        self.config_path = self.state_dir / "openclaw.json"
        self.log_dir = self.workdir / "logs"
        self.tmp_dir = self.workdir / "tmp"
        for d in (self.home, self.state_dir, self.log_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            config = {
                "logging": {"file": str(self.log_dir / "openclaw.log")},
                "update": {"checkOnStart": False},
            }
            self.config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    # -- environment -------------------------------------------------------------------------
    def env(self, env_extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_ENV_PREFIXES)}
        env.update(
            {
                "HOME": str(self.home),
                "OPENCLAW_STATE_DIR": str(self.state_dir),
                "OPENCLAW_CONFIG_PATH": str(self.config_path),
                "TMPDIR": str(self.tmp_dir),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "XDG_DATA_HOME": str(self.home / ".local" / "share"),
                "XDG_STATE_HOME": str(self.home / ".local" / "state"),
                "OPENCLAW_NO_AUTO_UPDATE": "1",
                "OPENCLAW_DISABLE_BONJOUR": "1",
                "DO_NOT_TRACK": "1",
                "NO_COLOR": "1",
                "FORCE_COLOR": "0",
                # Share Node's compile cache across runs (default is under TMPDIR, i.e. per
                # work dir): first CLI start in a fresh work dir drops from ~3 s to ~1 s.
                "NODE_COMPILE_CACHE": str(self.executable.resolve().parent.parent / ".node-compile-cache"),
                "NO_PROXY": "127.0.0.1,localhost,::1",
                "no_proxy": "127.0.0.1,localhost,::1",
            }
        )
        if env_extra:
            env.update(env_extra)
        return env

    # -- running -----------------------------------------------------------------------------
    def run(
        self,
        *args: str,
        env_extra: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> CallResult:
        """Run `openclaw <args...>` and capture the result (never raises on a non-zero exit)."""
        argv = (str(self.executable), *args)
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                env=self.env(env_extra),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise OpenClawTimeout(
                f"openclaw timed out after {timeout}s: {' '.join(argv)}\n"
                f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
            ) from exc
        return CallResult(
            rc=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            json=_parse_json(proc.stdout),
            argv=argv,
            duration_s=time.monotonic() - start,
        )

    def call(
        self,
        method: str,
        *,
        url: str,
        token: str | None,
        params: Any = None,
        timeout_ms: int = 10_000,
        expect_final: bool = False,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> CallResult:
        """`openclaw gateway call <method> --url URL --token TOKEN --json [--params JSON]`.

        `params` is serialised with json.dumps unless it is already a string. The subprocess
        timeout is `timeout_ms` plus a margin for Node start-up.
        """
        args = ["gateway", "call", method, "--url", url, "--json", "--timeout", str(timeout_ms)]
        if token is not None:
            args += ["--token", token]
        if password is not None:
            args += ["--password", password]
        if params is not None:
            args += ["--params", params if isinstance(params, str) else json.dumps(params)]
        if expect_final:
            args.append("--expect-final")
        args += list(extra_args)
        return self.run(*args, timeout_s=timeout_ms / 1000 + 30)

    def version(self) -> str:
        res = self.run("--version", timeout_s=30)
        if res.rc != 0:
            raise AssertionError(res.describe())
        return res.stdout.strip()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
