"""The CLI as an operator meets it: real subprocesses, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.testing.process import start_serve, wait_http_ok

EXE = shutil.which("appliance", path=str(Path(sys.executable).parent)) or "appliance"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout
    )


def test_version() -> None:
    res = run("version", "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout)["name"] == "appliance"
    assert run("version").stdout.startswith("appliance ")


def test_usage_error_exits_2() -> None:
    res = run("no-such-command")
    assert res.returncode == 2


def test_doctor_json_passes_on_a_fresh_data_dir(tmp_path: Path) -> None:
    res = run("doctor", "--json", "--data-dir", str(tmp_path / "d"))
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is True
    names = {c["name"]: c for c in doc["checks"]}
    assert {"config", "data_dir", "database", "disk", "clock", "container_engine"} <= set(names)
    assert names["container_engine"]["status"] == "skip"
    assert "not configured" in names["container_engine"]["detail"]


def test_doctor_fails_when_data_dir_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run("doctor", "--json", "--data-dir", str(blocker / "sub"))
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    assert any(c["name"] == "data_dir" and c["status"] == "fail" for c in doc["checks"])
    human = run("doctor", "--data-dir", str(blocker / "sub"))
    assert human.returncode == 1
    assert "FAIL" in human.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[gateway\n", "invalid TOML"),
        ("[gateway]\nport = 99999\n", "gateway.port: expected an integer in 0..65535, got 99999"),
        ("[gateway]\nportt = 1\n", "gateway.portt: unknown key"),
        ('[sandbox]\nmemory_mb = "lots"\n', "sandbox.memory_mb: expected an integer"),
    ],
)
def test_bad_config_exits_78_with_one_line(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "operator.toml"
    cfg.write_text(content)
    for command in ("serve", "doctor", "status"):
        res = run(command, "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
        assert res.returncode == 78, (command, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert str(cfg) in lines[0]
        assert needle in lines[0]
        assert "Traceback" not in res.stderr


def test_bad_env_exits_78(tmp_path: Path) -> None:
    res = run("serve", "--data-dir", str(tmp_path), env={"APPLIANCE_GATEWAY_PORT": "eighty"})
    assert res.returncode == 78
    assert res.stderr.strip() == (
        "appliance: environment APPLIANCE_GATEWAY_PORT: gateway.port: expected an integer in 0..65535, got 'eighty'"
    )


def test_bad_port_flag_is_a_config_error(tmp_path: Path) -> None:
    res = run("serve", "--data-dir", str(tmp_path), "--port", "70000")
    assert res.returncode == 78
    assert "command line: gateway.port" in res.stderr


def test_serve_generates_token_reports_where_and_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = start_serve(data, env={"APPLIANCE_GATEWAY_TOKEN": ""})
    try:
        token_file = data / "gateway.token"
        assert token_file.exists()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"stored (0600) in {token_file}" in serve.log_text()
        assert token_file.read_text().strip() not in serve.log_text()  # the secret itself is never printed
        status = run("status", "--json", "--data-dir", str(data))
        assert status.returncode == 0
        doc = json.loads(status.stdout)
        assert doc["gateway"]["running"] is True
        assert doc["gateway"]["ready"] is True
        assert doc["gateway"]["port"] == serve.port
    finally:
        rc = serve.terminate()
    assert rc == 0, serve.log_text()
    assert "Traceback" not in serve.log_text()
    assert not (data / "run" / "gateway.json").exists()
    after = json.loads(run("status", "--json", "--data-dir", str(data)).stdout)
    assert after["gateway"]["running"] is False


def test_serve_refuses_a_busy_port_with_one_line(tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "a")
    try:
        res = run(
            "serve",
            "--data-dir",
            str(tmp_path / "b"),
            "--port",
            str(serve.port),
            env={"APPLIANCE_GATEWAY_TOKEN": "x"},
        )
        assert res.returncode == 69, res.stderr
        assert "Traceback" not in res.stderr
        assert str(serve.port) in res.stderr
        wait_http_ok(serve.port)
    finally:
        serve.terminate()
