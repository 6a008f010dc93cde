"""Capture golden payloads from the REAL OpenClaw gateway, driven by the REAL openclaw CLI.

Not a test: a tool to (re)produce tests/integration/golden/*.json. It

1. starts `openclaw gateway run --bind loopback --allow-unconfigured --auth token --token <t>`
   with throwaway state on a free loopback port (no model key; offline),
2. starts tests/tools/ws_proxy.py in front of it, logging every frame,
3. runs `openclaw gateway call <method> --url ws://127.0.0.1:<proxy> --json ...` per case,
4. writes one golden file per method right after its cases ran, with the raw `res` frame(s),
   the events seen on that connection, the connect scopes the CLI asked for, and the CLI's exit
   code / stdout (only spelled out when stdout differs from the payload).

    .venv/bin/python tests/tools/capture_openclaw_golden.py [--only sessions.patch,health] \
        [--out tests/integration/golden] [--workdir /tmp/oc-golden]

Secrets and host-specific values are replaced by placeholders (see `Sanitizer`). Long arrays are
trimmed to `{"__trimmed__": true, "count": N, "first": [...]}`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from openclaw_client import CallResult, OpenClawCLI, install_openclaw  # noqa: E402

TOKEN = "golden-token-0123456789"
TRIM_OVER = 20
TRIM_KEEP = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return time.monotonic() - start
        time.sleep(0.2)
    raise TimeoutError(f"port {port} not accepting after {timeout_s}s")


# --------------------------------------------------------------------------------------------
@dataclass
class Sanitizer:
    replacements: list[tuple[str, str]] = field(default_factory=list)

    def add(self, value: str, placeholder: str) -> None:
        if value:
            self.replacements.append((value, placeholder))
            self.replacements.sort(key=lambda r: -len(r[0]))

    def text(self, s: str) -> str:
        for value, placeholder in self.replacements:
            s = s.replace(value, placeholder)
        s = re.sub(r"^(\d+):[0-9a-f-]{36}$", r"\1:<REQ_UUID>", s)
        s = re.sub(r"/__openclaw__/cap/[A-Za-z0-9_-]{16,}", "/__openclaw__/cap/<CAP_TOKEN>", s)
        return re.sub(r"(hmac-sha256:v1:)[A-Za-z0-9+/=_-]{16,}", r"\1<HASH>", s)

    def value(self, v: Any, key: str = "") -> Any:
        if isinstance(v, str):
            if key in ("nonce",):
                return "<NONCE>"
            if key in ("instanceId",) and v:
                return "<INSTANCE_ID>"
            if key in ("token", "deviceToken", "password") and v:
                return "<TOKEN>"
            if key == "recoveryScope" and v:
                return "<RECOVERY_SCOPE>"
            return self.text(v)
        if isinstance(v, list):
            items = [self.value(x, key) for x in v]
            if len(items) > TRIM_OVER:
                return {"__trimmed__": True, "count": len(items), "first": items[:TRIM_KEEP]}
            return items
        if isinstance(v, dict):
            return {k: self.value(x, k) for k, x in v.items()}
        return v


# --------------------------------------------------------------------------------------------
SAME = "<same as in the first successful case of this file>"
SAME_ROW = "<same as in the first row>"


def _elide_same(value: Any, ref: Any, marker: str = SAME) -> Any:
    """Replace big sub-values equal to the reference (same path) by SAME; recurse into dicts."""
    if isinstance(value, dict) and isinstance(ref, dict):
        out = {}
        for k, v in value.items():
            if k in ref and v == ref[k] and isinstance(v, dict | list) and len(json.dumps(v)) > 80:
                out[k] = marker
            else:
                out[k] = _elide_same(v, ref.get(k), marker)
        return out
    return value


def _trim_rows(value: Any, keep: int = 1) -> Any:
    if isinstance(value, dict) and value.get("__trimmed__") and isinstance(value.get("first"), list):
        return {**value, "first": value["first"][:keep]}
    if isinstance(value, list) and len(value) > keep:
        return {
            "__trimmed__": True,
            "count": len(value),
            "keys": [r.get("key") if isinstance(r, dict) else None for r in value],
            "first": value[:keep],
        }
    return value


USUAL_CLOSE = [{"side": "C", "code": 1005, "reason": None}, {"side": "S", "code": 1000, "reason": None}]


def compact_cases(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep files small (idempotent, so it can be re-applied to saved files):
    - drop `request` when it is exactly {type:req, method, params} of the case, and `ws_close`
      when it is the usual client close without status (1005) + server 1000;
    - in later successful cases, elide payload parts identical to the first successful case;
    - cap `sessions` row lists at 1 row except in the first case that has more than 3."""
    first_payload = None
    full_rows_shown = False
    out = []
    for case in cases:
        case = json.loads(json.dumps(case))
        req = case.get("request")
        if (
            isinstance(req, dict)
            and set(req) <= {"type", "method", "params"}
            and req.get("params", {}) == case.get("params")
        ):
            del case["request"]
        if case.get("ws_close") == USUAL_CLOSE:
            del case["ws_close"]
        resp = case.get("response")
        if isinstance(resp, dict) and resp.get("ok") and isinstance(resp.get("payload"), dict):
            payload = resp["payload"]
            rows = payload.get("sessions")
            if isinstance(rows, list) and not full_rows_shown and len(rows) > 3:
                full_rows_shown = True
                payload["sessions"] = [rows[0], *(_elide_same(r, rows[0], SAME_ROW) for r in rows[1:])]
            elif isinstance(rows, list) or (isinstance(rows, dict) and rows.get("__trimmed__")):
                payload["sessions"] = _trim_rows(rows)
            if first_payload is None:
                first_payload = payload
            else:
                resp["payload"] = _elide_same(payload, first_payload)
        out.append(case)
    return out


def recompact(path: Path) -> None:
    """Re-apply compact_cases to a saved golden file."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "cases" in doc:
        doc["cases"] = compact_cases(doc["cases"])
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    method: str
    params: Any = None
    expect_final: bool = False
    timeout_ms: int = 10_000
    token: str | None = None  # None = the right token
    note: str = ""
    keep_events: bool = False
    cli_args: tuple[str, ...] = ()  # if set: run `openclaw <cli_args>` with OPENCLAW_GATEWAY_URL/TOKEN env


@dataclass
class Rig:
    cli: OpenClawCLI
    gw_port: int
    proxy_port: int
    frames_path: Path
    san: Sanitizer
    out_dir: Path
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    last_call_s: float = 0.0

    def frames_since(self, offset: int) -> list[dict[str, Any]]:
        with self.frames_path.open(encoding="utf-8") as fh:
            fh.seek(offset)
            return [json.loads(line) for line in fh if line.strip()]

    def run_case(self, case: Case) -> tuple[CallResult, dict[str, Any]]:
        time.sleep(0.3)  # let the proxy flush the previous connection's close
        offset = self.frames_path.stat().st_size
        url = f"ws://127.0.0.1:{self.proxy_port}"
        if case.cli_args:
            env = {"OPENCLAW_GATEWAY_URL": url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
            res = self.cli.run(*case.cli_args, env_extra=env)
        else:
            res = self.cli.call(
                case.method,
                url=url,
                token=case.token if case.token is not None else TOKEN,
                params=case.params,
                timeout_ms=case.timeout_ms,
                expect_final=case.expect_final,
            )
        self.last_call_s = res.duration_s
        time.sleep(0.5)
        frames = self.frames_since(offset)
        record = self.build_record(case, res, frames)
        self.results.setdefault(case.method, []).append(record)
        status = "ok" if res.rc == 0 else f"rc={res.rc}"
        print(f"  {case.method:28s} {case.name:34s} {status} {res.duration_s:.1f}s", flush=True)
        return res, record

    def build_record(self, case: Case, res: CallResult, frames: list[dict[str, Any]]) -> dict[str, Any]:
        san = self.san
        connect = None
        request = None
        responses: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        closes: list[dict[str, Any]] = []
        for rec in frames:
            if rec.get("event") == "close":
                closes.append({k: rec.get(k) for k in ("side", "code", "reason")})
                continue
            frame = rec.get("frame")
            if not isinstance(frame, dict):
                continue
            if rec["dir"] == "C->S" and frame.get("type") == "req":
                if frame.get("method") == "connect":
                    connect = frame
                else:
                    request = frame
            elif rec["dir"] == "S->C" and frame.get("type") == "res":
                if connect is not None and frame.get("id") == connect.get("id"):
                    if not frame.get("ok"):
                        responses.append(frame)  # failed connect is the interesting frame
                elif request is not None and frame.get("id") == request.get("id"):
                    responses.append(frame)
            elif rec["dir"] == "S->C" and frame.get("type") == "event":
                if frame.get("event") == "connect.challenge":
                    continue
                ev: dict[str, Any] = {"event": frame.get("event")}
                for k in ("seq", "stateVersion"):
                    if k in frame:
                        ev[k] = frame[k]
                if case.keep_events or frame.get("event") not in ("health", "tick", "presence"):
                    ev["payload"] = frame.get("payload")
                events.append(ev)

        if case.cli_args:
            argv = ["OPENCLAW_GATEWAY_URL=ws://127.0.0.1:<PORT>", "OPENCLAW_GATEWAY_TOKEN=<TOKEN>"]
            argv += ["openclaw", *case.cli_args]
        else:
            argv = ["openclaw", "gateway", "call", case.method, "--url", "ws://127.0.0.1:<PORT>"]
            argv += ["--token", "<TOKEN>" if case.token is None else case.token, "--json"]
            if case.params is not None:
                argv += ["--params", json.dumps(case.params)]
            if case.expect_final:
                argv += ["--expect-final", "--timeout", str(case.timeout_ms)]

        record: dict[str, Any] = {"case": case.name}
        if case.note:
            record["note"] = case.note
        record["command"] = shlex.join(argv)
        if not case.cli_args:
            record["params"] = case.params if case.params is not None else {}
        if connect is not None:
            record["connect_scopes"] = connect.get("params", {}).get("scopes")
            client = connect.get("params", {}).get("client", {})
            if client.get("id") != "cli":
                record["connect_client"] = client
        if request is not None:
            record["request"] = {k: v for k, v in request.items() if k != "id"}
        if len(responses) == 1:
            record["response"] = responses[0]
        elif responses:
            record["responses"] = responses
        if events:
            record["events"] = events
        final = responses[-1] if responses else None
        cli: dict[str, Any] = {"rc": res.rc}
        if final is not None and final.get("ok") and res.rc == 0:
            cli["stdout_is_payload"] = res.json == final.get("payload") and (
                res.json is not None or res.stdout.strip() == "null"
            )
            if not cli["stdout_is_payload"]:
                cli["stdout"] = res.json if res.json is not None else res.stdout
        else:
            cli["stdout"] = res.json if res.json is not None else res.stdout
        if res.stderr.strip():
            cli["stderr"] = res.stderr.strip()
        record["cli"] = cli
        if closes:
            record["ws_close"] = closes
        return san.value(record)

    def save(self, method: str, notes: str = "") -> Path:
        path = self.out_dir / f"{method}.json"
        doc: dict[str, Any] = {
            "method": method,
            "source": "real openclaw@2026.9.6 gateway (offline, loopback, --auth token), "
            "driven by real `openclaw gateway call --json`; frames from tests/tools/ws_proxy.py",
        }
        if notes:
            doc["notes"] = notes
        doc["cases"] = compact_cases(self.results.get(method, []))
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"  -> wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", flush=True)
        return path


# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_gateway(openclaw: Path, workdir: Path, san: Sanitizer) -> Iterator[tuple[int, int, Path]]:
    state = workdir / "gw-state"
    home = workdir / "gw-home"
    logs = workdir / "gw-logs"
    for d in (state, home, logs):
        d.mkdir(parents=True, exist_ok=True)
    config = state / "openclaw.json"
    config.write_text(
        json.dumps({"logging": {"file": str(logs / "gateway.log")}, "update": {"checkOnStart": False}}),
        encoding="utf-8",
    )
    san.add(str(state), "<GW_STATE_DIR>")
    san.add(str(home), "<GW_HOME>")
    san.add(str(logs), "<GW_LOG_DIR>")
    san.add(str(workdir), "<WORKDIR>")
    san.add(TOKEN, "<TOKEN>")
    san.add(socket.gethostname(), "<HOSTNAME>")
    gw_port = free_port()
    proxy_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "NODE_OPTIONS"))}
    env.update(
        {
            "OPENCLAW_STATE_DIR": str(state),
            "OPENCLAW_CONFIG_PATH": str(config),
            "HOME": str(home),
            "TMPDIR": str(workdir / "gw-tmp"),
            "OPENCLAW_DISABLE_BONJOUR": "1",
            "OPENCLAW_NO_RESPAWN": "1",
            "OPENCLAW_SKIP_CHANNELS": "1",
            "OPENCLAW_EXEC_SHELL_SNAPSHOT": "0",
            "OPENCLAW_NO_AUTO_UPDATE": "1",
            "DO_NOT_TRACK": "1",
            "NO_COLOR": "1",
        }
    )
    (workdir / "gw-tmp").mkdir(exist_ok=True)
    gw_out = (workdir / "gateway.out").open("w")
    argv = [str(openclaw), "gateway", "run", "--port", str(gw_port), "--bind", "loopback"]
    argv += ["--allow-unconfigured", "--auth", "token", "--token", TOKEN]
    t0 = time.monotonic()
    gw = subprocess.Popen(argv, env=env, stdout=gw_out, stderr=subprocess.STDOUT, start_new_session=True)
    frames = workdir / "frames.jsonl"
    frames.write_text("")
    proxy = None
    try:
        wait_port(gw_port, 90)
        # wait for "[gateway] ready"
        while time.monotonic() - t0 < 90:
            if "[gateway] ready" in (workdir / "gateway.out").read_text(errors="replace"):
                break
            time.sleep(0.3)
        print(f"gateway ready on {gw_port} after {time.monotonic() - t0:.1f}s", flush=True)
        proxy = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "ws_proxy.py"),
                "--listen",
                f"127.0.0.1:{proxy_port}",
                "--upstream",
                f"ws://127.0.0.1:{gw_port}/",
                "--log",
                str(frames),
            ],
            start_new_session=True,
        )
        wait_port(proxy_port, 20)
        san.add(f"127.0.0.1:{gw_port}", "127.0.0.1:<GW_PORT>")
        san.add(f"127.0.0.1:{proxy_port}", "127.0.0.1:<PORT>")
        yield gw_port, proxy_port, frames
    finally:
        for p in (proxy, gw):
            if p is not None and p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(5)
        gw_out.close()


# --------------------------------------------------------------------------------------------
Plan = list[tuple[str, Callable[[Rig], None]]]


def _c(rig: Rig, method: str, name: str, params: Any = None, **kw: Any) -> CallResult:
    res, _ = rig.run_case(Case(name=name, method=method, params=params, **kw))
    return res


def step_health(rig: Rig) -> None:
    _c(rig, "health", "default", None)
    _c(rig, "health", "probe", {"probe": True})
    rig.run_case(
        Case(name="openclaw health --json (env URL/TOKEN)", method="health", cli_args=("health", "--json"))
    )
    rig.run_case(Case(name="openclaw health (text)", method="health", cli_args=("health",)))
    rig.save(
        "health", "The gateway also pushes a `health` event (with seq + stateVersion) on the same socket."
    )


def step_hello_ok(rig: Rig) -> None:
    with rig.frames_path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            frame = rec.get("frame")
            if (
                isinstance(frame, dict)
                and frame.get("type") == "res"
                and isinstance(frame.get("payload"), dict)
                and frame["payload"].get("type") == "hello-ok"
            ):
                break
        else:
            raise RuntimeError("no hello-ok frame captured yet")
    doc = {
        "source": "raw `res` frame answering the CLI's `connect` (openclaw gateway call health), "
        "captured by tests/tools/ws_proxy.py against the real openclaw@2026.9.6 gateway",
        "notes": "Secrets/host values replaced by placeholders; arrays longer than 20 are trimmed to "
        '{"__trimmed__": true, "count": N, "first": [...]}. features.events_full lists every advertised event; the full method list is in the spec appendix.',
        "frame": rig.san.value(frame),
    }
    doc["frame"]["payload"]["features"]["events_full"] = frame["payload"]["features"]["events"]
    # the challenge and connect request of the same connection
    conn = rec["conn"]
    with rig.frames_path.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            f = r.get("frame")
            if r.get("conn") != conn or not isinstance(f, dict):
                continue
            if f.get("event") == "connect.challenge":
                doc["challenge"] = rig.san.value(f)
            if f.get("method") == "connect":
                doc["connect_request"] = rig.san.value(f)
    path = rig.out_dir / "hello-ok.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"  -> wrote {path}", flush=True)


def step_status(rig: Rig) -> None:
    _c(rig, "status", "default")
    rig.save("status")


def step_sessions_list_empty(rig: Rig) -> None:
    _c(rig, "sessions.list", "fresh gateway", {})
    rig.save("sessions.list")
    _c(rig, "last-heartbeat", "fresh gateway (no heartbeat yet)", {})
    rig.save("last-heartbeat")


STATE: dict[str, Any] = {}
LONG_LABEL = "L" * 65


def step_sessions_patch(rig: Rig) -> None:
    m = "sessions.patch"
    a = "agent:main:golden-a"
    r = _c(rig, m, "label set on new key (creates session)", {"key": a, "label": "Golden A"})
    if isinstance(r.json, dict):
        STATE["sid_a"] = (r.json.get("entry") or {}).get("sessionId")
    _c(rig, m, "label 64 chars", {"key": "agent:main:golden-64", "label": "x" * 64})
    _c(rig, m, "label 65 chars (accepted: limit is 512)", {"key": "agent:main:golden-65", "label": "y" * 65})
    _c(rig, m, "label 512 chars", {"key": "agent:main:golden-512", "label": "z" * 512})
    _c(rig, m, "label 513 chars (too long)", {"key": "agent:main:golden-512", "label": "z" * 513})
    _c(rig, m, "duplicate label: first key", {"key": "agent:main:golden-dup1", "label": "Dup"})
    _c(rig, m, "duplicate label: second key (refused)", {"key": "agent:main:golden-dup2", "label": "Dup"})
    _c(
        rig,
        m,
        "label with surrounding spaces (trimmed)",
        {"key": "agent:main:golden-b", "label": "  Golden B  "},
    )
    _c(rig, m, "label whitespace only", {"key": "agent:main:golden-b", "label": "   "})
    _c(rig, m, "label empty string", {"key": "agent:main:golden-b", "label": ""})
    _c(rig, m, "label null (clear)", {"key": "agent:main:golden-b", "label": None})
    _c(rig, m, "label not a string", {"key": "agent:main:golden-b", "label": 5})
    _c(rig, m, "thinkingLevel high", {"key": a, "thinkingLevel": "high"})
    _c(rig, m, "thinkingLevel invalid", {"key": a, "thinkingLevel": "bogus"})
    _c(rig, m, "thinkingLevel null", {"key": a, "thinkingLevel": None})
    _c(rig, m, "model set (anthropic)", {"key": a, "model": "anthropic/claude-sonnet-4-5"})
    _c(rig, m, "model default openai (needs codex harness)", {"key": a, "model": "openai/gpt-6-astra"})
    _c(rig, m, "model unknown provider", {"key": a, "model": "nope/not-a-model"})
    _c(rig, m, "model null (reset to default)", {"key": a, "model": None})
    _c(rig, m, "sendPolicy allow", {"key": a, "sendPolicy": "allow"})
    _c(rig, m, "sendPolicy deny", {"key": a, "sendPolicy": "deny"})
    _c(rig, m, "sendPolicy null", {"key": a, "sendPolicy": None})
    _c(rig, m, "sendPolicy invalid", {"key": a, "sendPolicy": "maybe"})
    _c(rig, m, "responseUsage off", {"key": a, "responseUsage": "off"})
    _c(rig, m, "responseUsage tokens", {"key": a, "responseUsage": "tokens"})
    _c(rig, m, "responseUsage invalid", {"key": a, "responseUsage": "bogus"})
    _c(rig, m, "verboseLevel on", {"key": a, "verboseLevel": "on"})
    _c(rig, m, "fastMode true", {"key": a, "fastMode": True})
    _c(rig, m, "spawnedBy on non-subagent key", {"key": a, "spawnedBy": "agent:main:main"})
    _c(rig, m, "spawnedBy on subagent key", {"key": "agent:main:subagent:golden-sub", "spawnedBy": a})
    _c(rig, m, "unknown field", {"key": a, "bogusField": 1})
    _c(rig, m, "queueMode (not patchable)", {"key": a, "queueMode": "steer"})
    _c(rig, m, "missing key", {"label": "x"})
    _c(rig, m, "empty params", {})
    _c(rig, m, "main key label", {"key": "agent:main:main", "label": "Main"})
    _c(rig, m, "bare key (no agent: prefix)", {"key": "golden-bare", "label": "Bare"})
    _c(rig, m, "only key (no-op)", {"key": a})
    rig.save(
        m,
        "The CLI picks connect scopes from the params (see connect_scopes): label/thinking/model use "
        "operator.write, sendPolicy/responseUsage/unknown fields use operator.admin.",
    )


def step_agent_chat(rig: Rig) -> None:
    _c(
        rig,
        "agent",
        "agent expect-final without model credentials (creates session)",
        {"message": "hi", "sessionKey": "agent:main:golden-agent", "idempotencyKey": "golden-idem-agent-1"},
        expect_final=True,
        timeout_ms=60_000,
    )
    rig.save("agent", "Two `res` frames for one request id: early `accepted` ack, then the final one.")
    _c(
        rig,
        "chat.send",
        "chat.send without model credentials",
        {"sessionKey": "agent:main:golden-chat", "message": "hello", "idempotencyKey": "golden-idem-chat-1"},
    )
    time.sleep(4)
    rig.save("chat.send")


def step_sessions_list_after(rig: Rig) -> None:
    r = _c(rig, "sessions.list", "after patch/agent/chat.send", {})
    if isinstance(r.json, dict):
        for row in r.json.get("sessions", []):
            STATE.setdefault("sids", {})[row.get("key")] = row.get("sessionId")
    _c(rig, "sessions.list", "limit 2", {"limit": 2})
    _c(rig, "sessions.list", "limit 2 offset 2", {"limit": 2, "offset": 2})
    _c(rig, "sessions.list", "search", {"search": "golden"})
    _c(rig, "sessions.list", "unknown field", {"bogusField": 1})
    rig.save("sessions.list")


def step_preview(rig: Rig) -> None:
    m = "sessions.preview"
    _c(
        rig,
        m,
        "existing + chat + missing",
        {
            "keys": [
                "agent:main:golden-agent",
                "agent:main:golden-chat",
                "agent:main:golden-a",
                "agent:main:nope",
            ]
        },
    )
    _c(rig, m, "limit + maxChars", {"keys": ["agent:main:golden-agent"], "limit": 1, "maxChars": 10})
    _c(rig, m, "no keys", {})
    rig.save(m)


def step_resolve(rig: Rig) -> None:
    m = "sessions.resolve"
    _c(rig, m, "by key", {"key": "agent:main:golden-a"})
    _c(rig, m, "by label", {"label": "Golden A"})
    _c(rig, m, "by label, different case", {"label": "golden a"})
    _c(rig, m, "by label shared by two keys", {"label": "Dup"})
    _c(rig, m, "by key and label", {"key": "agent:main:golden-a", "label": "Golden A"})
    sid = STATE.get("sid_a") or (STATE.get("sids") or {}).get("agent:main:golden-a")
    _c(rig, m, "by sessionId", {"sessionId": sid})
    _c(rig, m, "key not found", {"key": "agent:main:does-not-exist"})
    _c(rig, m, "label not found", {"label": "No Such Label"})
    _c(rig, m, "sessionId not found", {"sessionId": "00000000-0000-4000-8000-000000000000"})
    _c(rig, m, "no params", {})
    rig.save(m)


def step_reset(rig: Rig) -> None:
    m = "sessions.reset"
    _c(rig, m, "reason new", {"key": "agent:main:golden-agent", "reason": "new"})
    _c(rig, m, "reason reset", {"key": "agent:main:golden-a", "reason": "reset"})
    _c(rig, m, "no reason", {"key": "agent:main:golden-b"})
    _c(rig, m, "reason invalid", {"key": "agent:main:golden-b", "reason": "bogus"})
    _c(rig, m, "unknown key (creates the session)", {"key": "agent:main:reset-created"})
    rig.save(m)


def step_compact(rig: Rig) -> None:
    m = "sessions.compact"
    _c(rig, m, "maxLines 0", {"key": "agent:main:golden-agent", "maxLines": 0})
    _c(rig, m, "maxLines 5", {"key": "agent:main:golden-agent", "maxLines": 5})
    _c(rig, m, "no maxLines", {"key": "agent:main:golden-chat"})
    _c(rig, m, "unknown key", {"key": "agent:main:never-existed-3"})
    rig.save(m)


def step_usage(rig: Rig) -> None:
    _c(rig, "sessions.usage", "default", {})
    _c(rig, "sessions.usage", "key", {"key": "agent:main:golden-agent"})
    rig.save("sessions.usage")
    _c(rig, "sessions.usage.timeseries", "key", {"key": "agent:main:golden-agent"})
    _c(rig, "sessions.usage.timeseries", "no key", {})
    rig.save("sessions.usage.timeseries")
    _c(rig, "sessions.usage.logs", "key", {"key": "agent:main:golden-agent"})
    _c(rig, "sessions.usage.logs", "no key", {})
    rig.save("sessions.usage.logs")
    _c(rig, "usage.status", "default", {})
    rig.save("usage.status")
    _c(rig, "usage.cost", "default", {})
    _c(rig, "usage.cost", "days 7", {"days": 7})
    rig.save("usage.cost")


def step_history(rig: Rig) -> None:
    _c(rig, "sessions.history", "key", {"key": "agent:main:golden-agent"})
    _c(rig, "sessions.history", "sessionKey", {"sessionKey": "agent:main:golden-agent"})
    rig.save("sessions.history")
    _c(rig, "chat.history", "sessionKey", {"sessionKey": "agent:main:golden-chat"})
    rig.save("chat.history")
    _c(rig, "session.status", "key", {"key": "agent:main:golden-agent"})
    _c(rig, "session.status", "sessionKey", {"sessionKey": "agent:main:golden-agent"})
    rig.save("session.status")


def step_extra(rig: Rig) -> None:
    m = "sessions.describe"
    _c(rig, m, "existing key", {"key": "agent:main:golden-a"})
    _c(rig, m, "unknown key", {"key": "agent:main:never-existed-1"})
    rig.save(m)
    m = "sessions.create"
    _c(rig, m, "key + label", {"key": "agent:main:golden-created", "label": "Created"})
    _c(rig, m, "no params", {})
    rig.save(m)
    _c(rig, "agents.list", "default", {})
    rig.save("agents.list")
    _c(rig, "models.list", "default", {})
    rig.save("models.list")
    _c(rig, "cron.status", "default", {})
    rig.save("cron.status")
    _c(rig, "cron.list", "default", {})
    rig.save("cron.list")


def step_system(rig: Rig) -> None:
    _c(rig, "last-heartbeat", "later in the run (a heartbeat may or may not have fired)", {})
    rig.save("last-heartbeat")
    _c(rig, "system-presence", "default", {})
    rig.save("system-presence")


def step_delete(rig: Rig) -> None:
    m = "sessions.delete"
    _c(rig, m, "normal", {"key": "agent:main:golden-b"})
    _c(rig, m, "main key refused", {"key": "agent:main:main"})
    _c(rig, m, "deleteTranscript", {"key": "agent:main:golden-agent", "deleteTranscript": True})
    _c(rig, m, "unknown key", {"key": "agent:main:never-existed-2"})
    _c(rig, m, "already deleted", {"key": "agent:main:golden-b"})
    rig.save(m)
    _c(rig, "sessions.list", "after deletes", {})
    rig.save("sessions.list")


def step_errors(rig: Rig) -> None:
    _c(rig, "no.such.method", "unknown method", {})
    rig.save("no.such.method")
    rig.run_case(Case(name="bad token", method="health", token="WRONG-TOKEN"))
    rig.results["bad-token"] = rig.results["health"][-1:]
    rig.results["health"] = rig.results["health"][:-1]
    rig.save("bad-token", "The failing frame is the `res` to `connect`; the server then closes the socket.")


PLAN: Plan = [
    ("health", step_health),
    ("hello-ok", step_hello_ok),
    ("status", step_status),
    ("sessions.list.empty", step_sessions_list_empty),
    ("sessions.patch", step_sessions_patch),
    ("agent", step_agent_chat),
    ("sessions.list", step_sessions_list_after),
    ("sessions.preview", step_preview),
    ("sessions.resolve", step_resolve),
    ("sessions.reset", step_reset),
    ("sessions.compact", step_compact),
    ("usage", step_usage),
    ("history", step_history),
    ("extra", step_extra),
    ("system", step_system),
    ("sessions.delete", step_delete),
    ("errors", step_errors),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "tests" / "integration" / "golden"))
    parser.add_argument("--workdir", default="/tmp/oc-golden")
    parser.add_argument("--only", default="", help="comma-separated step names")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    if workdir.exists():
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
    workdir.mkdir(parents=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    openclaw = install_openclaw()
    san = Sanitizer()
    cli = OpenClawCLI(openclaw, workdir / "cli")
    san.add(str(cli.workdir), "<CLI_WORKDIR>")

    plan = PLAN
    only = {s for s in args.only.split(",") if s}

    with running_gateway(openclaw, workdir, san) as (gw_port, proxy_port, frames):
        rig = Rig(cli, gw_port, proxy_port, frames, san, out)
        for name, step in plan:
            if only and name not in only:
                continue
            print(f"[{name}]", flush=True)
            try:
                step(rig)
            except Exception as exc:
                print(f"  !! step {name} failed: {exc!r}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
