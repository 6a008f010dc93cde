"""The runner (``appliance/sandbox/runner.py``) as a subprocess with fake FIFOs: no engine needed.

The host's side is played here by plain ``os`` calls on FIFOs opened ``O_RDWR``, as
:mod:`appliance.sandbox.pipes` opens them. The frozen runner in a real container is covered by the
attack suite (``test_sandbox_attacks.py``).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from appliance.sandbox import runner
from appliance.sandbox.wire import RunRecord, RunRequest, encode_frame, parse_result_channel

RUNNER = runner.__file__
FORBIDDEN = ("appliance", "trio", "attrs", "cattrs", "httpx", "httpcore", "podman", "requests", "structlog")


@attrs.frozen
class Outcome:
    returncode: int
    stdout: bytes
    stderr: bytes
    ready: bool
    record: RunRecord | None


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def _run(tmp_path: Path, request: RunRequest, stdin: bytes = b"", *, raw: bytes | None = None) -> Outcome:
    """Start the runner, wait for its ready line, write the frame (from a thread: it may be larger than a
    pipe buffer), close our end (EOF for a short frame), collect everything."""
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    fds = {}
    for name in ("stdin", "stdout", "stderr", "result"):
        os.mkfifo(pipes / name)
        fds[name] = os.open(pipes / name, os.O_RDWR | os.O_NONBLOCK)
    env = {"APPLIANCE_RUNNER_PIPE_DIR": str(pipes), "PATH": os.environ["PATH"], "SECRET_HOST": "no"}
    proc = subprocess.Popen([sys.executable, RUNNER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        result = b""
        while b"\n" not in result:
            select.select([fds["result"]], [], [], 30)
            result += _read_all(fds["result"])
        frame = bytes(encode_frame(request, stdin)) if raw is None else raw
        os.set_blocking(fds["stdin"], True)

        def feed() -> None:
            os.write(fds["stdin"], frame)
            os.close(fds.pop("stdin"))

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fed = pool.submit(feed)
            outputs = {"stdout": b"", "stderr": b""}
            while proc.poll() is None:
                select.select([fds["stdout"], fds["stderr"]], [], [], 0.05)
                for name in outputs:
                    outputs[name] += _read_all(fds[name])
            fed.result(timeout=30)
        proc.communicate(timeout=30)
        for name in outputs:
            outputs[name] += _read_all(fds[name])
        ready, record, _ = parse_result_channel(result + _read_all(fds["result"]))
        return Outcome(proc.returncode, outputs["stdout"], outputs["stderr"], ready, record)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fd in fds.values():
            os.close(fd)


def _request(*argv: str, **kw: object) -> RunRequest:
    base: dict[str, object] = {"cwd": "/", "timeout_s": 20.0, "out_cap": 4096, "err_cap": 4096}
    return RunRequest(argv=argv, **{**base, **kw})  # type: ignore[arg-type]


def test_runner_imports_only_the_standard_library() -> None:
    """Run isolated (-I: no site-packages at all) and list what got imported: nothing of ours or third
    party, so the frozen bundle is the runner plus the stdlib modules it needs."""
    code = (
        "import json, runpy, sys; runpy.run_path(sys.argv[1], run_name='runner_check');"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", code, RUNNER],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules = json.loads(out.stdout)
    assert "subprocess" in modules
    assert [m for m in modules if m.split(".")[0] in FORBIDDEN] == []
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not [m for m in imported if m.split(".")[0] in FORBIDDEN]


def test_command_gets_stdin_and_its_status_is_recorded(tmp_path: Path) -> None:
    out = _run(
        tmp_path,
        _request("sh", "-c", 'read s; echo "len=${#s}"; echo oops >&2; exit 3'),
        b"s3cret-value\n",
    )
    assert (out.returncode, out.stdout, out.stderr) == (3, b"len=12\n", b"oops\n")
    assert out.ready
    assert out.record is not None
    assert (out.record.exit_code, out.record.signal, out.record.timed_out) == (3, None, False)
    assert (out.record.out_bytes, out.record.err_bytes) == (7, 5)
    assert out.record.max_rss_kb > 0
    assert out.record.errors == ()


def test_secret_never_reaches_env_argv_or_output(tmp_path: Path) -> None:
    script = "cat /proc/self/environ /proc/$PPID/environ /proc/$PPID/cmdline | tr '\\0' '\\n'; env"
    out = _run(tmp_path, _request("sh", "-c", script, env=(("TZ", "UTC"),)), b"s3cret-value\n")
    text = out.stdout.decode()
    assert "s3cret-value" not in text
    assert "TZ=UTC" in text
    assert "SECRET_HOST" not in text.split("\n", 1)[0]  # the command's env is built, not inherited


def test_cwd_env_and_large_stdin(tmp_path: Path) -> None:
    big = os.urandom(300_000)  # more than a pipe buffer: the runner feeds it without blocking its loop
    out = _run(
        tmp_path, _request("sh", "-c", 'pwd; echo "$FOO"; wc -c', cwd="/tmp", env=(("FOO", "bar"),)), big
    )
    assert out.stdout.split() == [b"/tmp", b"bar", b"300000"]
    assert out.returncode == 0


def test_output_beyond_the_cap_is_dropped_and_the_writer_stopped(tmp_path: Path) -> None:
    out = _run(tmp_path, _request("yes", out_cap=1000, timeout_s=30.0))
    assert len(out.stdout) == 1000
    assert out.record is not None
    assert (out.record.out_truncated, out.record.out_bytes) == (True, 1000)
    assert out.record.signal == 13  # SIGPIPE, as with `yes | head -c 1000`
    assert not out.record.timed_out


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    out = _run(tmp_path, _request("sh", "-c", "sleep 60 & sleep 60 & echo started; wait", timeout_s=0.5))
    assert out.stdout == b"started\n"
    assert out.record is not None
    assert (out.record.timed_out, out.record.signal, out.returncode) == (True, 9, 137)


def test_missing_command_is_a_runner_error(tmp_path: Path) -> None:
    out = _run(tmp_path, _request("/nonexistent/tool"))
    assert out.returncode == 127
    assert out.record is not None
    assert out.record.exit_code == 127
    assert "cannot run '/nonexistent/tool'" in out.record.errors[0]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"v":1,"argv":[]}\n', "argv"),
        (b"not json\n", "not JSON"),
        (
            b'{"v":1,"argv":["true"],"cwd":"/","timeout_s":1,"out_cap":1,"err_cap":1,"stdin_bytes":5}\nab',
            "closed",
        ),
    ],
)
def test_bad_frame_runs_nothing(tmp_path: Path, raw: bytes, why: str) -> None:
    """The host closes its end after writing here, so a short frame ends in EOF."""
    out = _run(tmp_path, _request("true"), raw=raw)
    assert out.returncode == 70
    assert out.record is not None
    assert out.record.exit_code is None
    assert why in out.record.errors[0]


def test_without_pipes_the_runner_just_execs_its_arguments(tmp_path: Path) -> None:
    env = {"APPLIANCE_RUNNER_PIPE_DIR": str(tmp_path), "PATH": os.environ["PATH"]}
    ran = subprocess.run([sys.executable, RUNNER, "echo", "bare"], env=env, capture_output=True, timeout=60)
    assert (ran.returncode, ran.stdout) == (0, b"bare\n")
    none = subprocess.run([sys.executable, RUNNER], env=env, capture_output=True, timeout=60)
    assert none.returncode == 64
