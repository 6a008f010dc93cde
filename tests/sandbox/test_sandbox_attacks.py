# ruff: noqa: ASYNC240  (tiny fixture-file set-up and checks inside async tests; no event-loop work to block)
"""The attack suite, for real: each attack through the Podman backend and the Docker API backend.

Every test states the attack and what "contained" means. 0 escapes: a test fails if the attack worked.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import httpx
import pytest
import trio

from appliance import log as applog
from appliance.errors import SandboxUnavailable
from appliance.sandbox.backend import RunResult, SandboxBackend
from appliance.sandbox.output import TRUNCATION_MARKER
from appliance.sandbox.paths import resolve_path
from appliance.sandbox.policy import (
    Limits,
    MountAllowlist,
    MountRefused,
    MountRequest,
    NetMode,
    RunSpec,
    build_run_spec,
    parse_mount_allowlist,
    resolve_mounts,
)
from appliance.sandbox.service import SandboxPaths, run_in_sandbox

pytestmark = [pytest.mark.podman, pytest.mark.integration]

CANARY = "canary-7f3a9c1e-do-not-leak"


@pytest.fixture
def paths(tmp_path: Path) -> SandboxPaths:
    home = tmp_path / "home"
    for d in ("data/keys", "conf", "ws", "projects/app", ".aws"):
        (home / d).mkdir(parents=True)
    (home / "projects/app/marker").write_text("ok-content\n")
    (home / ".aws/credentials").write_text(CANARY)
    (home / "outside").mkdir()
    (home / "outside/marker").write_text(CANARY)
    (home / "projects/aws-link").symlink_to(home / ".aws")
    (home / "projects/out-link").symlink_to(home / "outside")
    (home / "conf/mount-allowlist").write_text("allow ~/projects rw\n")
    return SandboxPaths(
        data_dir=str(home / "data"),
        runtime_dir="unused",
        workspaces=str(home / "ws"),
        mount_allowlist=str(home / "conf/mount-allowlist"),
        egress_allowlist=str(home / "conf/egress-allowlist"),
        image_file=str(home / "data/runner-image"),
        protected=(str(home / "data"), str(home / "conf")),
        home=str(home),
    )


LIMITS = Limits(cpus=1.0, memory_mb=64, pids=32, timeout_s=20, output_cap_bytes=4096)


async def _run(
    backend: SandboxBackend,
    paths: SandboxPaths,
    image: str,
    script: str,
    *,
    limits: Limits = LIMITS,
    group: str = "main",
    stdin: bytes | bytearray = b"",
    network: NetMode = NetMode.NONE,
    extra_mounts: tuple[MountRequest, ...] = (),
) -> RunResult:
    with trio.fail_after(60):
        return await run_in_sandbox(
            backend,
            paths,
            group=group,
            argv=["sh", "-c", script],
            limits=limits,
            image=image,
            stdin=stdin,
            network=network,
            extra_mounts=extra_mounts,
        )


async def test_baseline_true_and_stdin(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    result = await _run(
        backend, paths, runner_image, "read x; echo got:$x; echo oops >&2; exit 7", stdin=b"hello\n"
    )
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"got:hello\n", b"oops\n")
    assert not (result.timed_out)
    assert not (result.oom_killed)
    assert not (result.truncated)


async def test_runs_unprivileged(backend: SandboxBackend, paths: SandboxPaths, runner_image: str) -> None:
    """Attack: use root or capabilities. Contained: uid 65534, no effective caps, no-new-privs."""
    result = await _run(
        backend, paths, runner_image, "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"
    )
    out = result.stdout.decode()
    assert out.splitlines()[0] == "65534"
    assert "CapEff:\t0000000000000000" in out
    assert "CapBnd:\t0000000000000000" in out
    assert "NoNewPrivs:\t1" in out


async def test_read_only_root(backend: SandboxBackend, paths: SandboxPaths, runner_image: str) -> None:
    """Attack: write to the image root or a read-only mount; fill /tmp. Contained: EROFS / tmpfs cap."""
    script = (
        "touch /x; echo a=$?; touch /bin/x; echo b=$?; touch /tmp/x; echo c=$?; "
        "touch /workspace/group/x; echo d=$?; touch /workspace/extra/app/x; echo e=$?; "
        "head -c 64000000 /dev/zero > /tmp/big; echo f=$?"
    )
    result = await _run(backend, paths, runner_image, script, extra_mounts=(MountRequest("~/projects/app"),))
    lines = set(result.stdout.decode().split())
    assert {"a=1", "b=1", "c=0", "d=0", "e=1", "f=1"} <= lines, result
    assert not Path(paths.home, "projects/app/x").exists()


async def test_secret_only_reaches_stdin(
    backend: SandboxBackend,
    paths: SandboxPaths,
    runner_image: str,
    podman_socket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attack: find the run's secret in env, /proc/1/environ, inspect output, logs or files.

    Contained: only the command's stdin has it.
    """
    monkeypatch.setenv("APPLIANCE_HOST_SECRET", CANARY)
    sink = io.StringIO()
    applog.configure(level="debug", stream=sink, human=False)
    inspected: list[str] = []

    async def _inspect_while_running() -> None:
        transport = httpx.AsyncHTTPTransport(uds=podman_socket)
        async with httpx.AsyncClient(transport=transport, base_url="http://d") as client:
            filters = json.dumps({"label": ["appliance.group=inspectg"]})
            while not inspected:
                listing = (await client.get("/v1.41/containers/json", params={"filters": filters})).json()
                for c in listing:
                    inspected.append((await client.get(f"/v1.41/containers/{c['Id']}/json")).text)
                    inspected.append((await client.get(f"/v4.0.0/libpod/containers/{c['Id']}/json")).text)
                await trio.sleep(0.05)

    script = (
        "read s; echo stdin-len=${#s}; cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; env; sleep 1"
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_inspect_while_running)
            secret = bytearray(CANARY.encode() + b"\n")
            result = await _run(backend, paths, runner_image, script, stdin=secret, group="inspectg")
            nursery.cancel_scope.cancel()
    finally:
        applog.configure()
    assert secret == bytearray(len(secret)), "the caller's secret buffer is zeroed after the run"
    out = result.stdout.decode()
    assert out.startswith(f"stdin-len={len(CANARY)}\n")  # the command got it, on stdin only
    assert CANARY not in out
    assert inspected
    assert all(CANARY not in text for text in inspected)
    assert CANARY not in sink.getvalue()
    for root, _, files in os.walk(paths.home):
        for name in files:
            p = Path(root, name)
            if p.is_file() and not p.is_symlink() and p.name not in ("credentials", "marker"):
                assert CANARY not in p.read_text(errors="replace"), p


async def test_mounted_env_and_ssh_are_masked(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: read a .env or .ssh that sits in the workspace. Contained: masked (empty)."""
    ws = Path(paths.workspace("main"))
    (ws / ".ssh").mkdir(parents=True)
    (ws / ".env").write_text(CANARY)
    (ws / ".ssh/id_ed25519").write_text(CANARY)
    result = await _run(
        backend, paths, runner_image, "cat /workspace/group/.env; ls -A /workspace/group/.ssh; echo done"
    )
    assert CANARY not in result.stdout.decode() + result.stderr.decode()
    assert b"done" in result.stdout


async def test_path_traversal_and_symlink_escapes_are_refused(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: extra mounts by '..', by a symlink to a secret dir, by a symlink out of the root.

    Contained: all three rejected by the policy; nothing of them is visible in the container.
    """
    requests = (
        MountRequest("~/projects/../.aws", "a"),
        MountRequest("~/projects/aws-link", "b"),
        MountRequest("~/projects/out-link", "c"),
        MountRequest(paths.data_dir, "d"),
    )
    result = await _run(
        backend,
        paths,
        runner_image,
        "ls /workspace/extra 2>&1; cat /workspace/extra/*/* 2>&1; echo end",
        extra_mounts=requests,
    )
    assert CANARY not in result.stdout.decode()
    assert b"No such file or directory" in result.stdout


def _spec_with_extra(paths: SandboxPaths, image: str, request: MountRequest, script: str) -> RunSpec:
    allow: MountAllowlist = parse_mount_allowlist(
        Path(paths.mount_allowlist).read_text(), paths.mount_allowlist
    )
    ws = paths.workspace("main")
    os.makedirs(ws, exist_ok=True)
    os.chown(ws, 65534, 65534)
    mounts, rejected = resolve_mounts(
        group="main",
        is_main=True,
        workspace=ws,
        shared=None,
        requests=[request],
        allowlist=allow,
        resolver=resolve_path,
        home=paths.home,
        protected=paths.protected,
    )
    assert not rejected
    return build_run_spec(image=image, argv=["sh", "-c", script], mounts=mounts, limits=LIMITS, group="main")


async def test_requested_symlink_swapped_after_check_mounts_the_checked_target(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: request a harmless symlink, re-point it at a secret after the check. Contained: the
    resolved path was mounted, so the container sees the checked target."""
    link = Path(paths.home, "projects/app-link")
    link.symlink_to(Path(paths.home, "projects/app"))
    spec = _spec_with_extra(
        paths, runner_image, MountRequest(str(link), "app"), "cat /workspace/extra/app/marker"
    )
    link.unlink()
    link.symlink_to(Path(paths.home, "outside"))
    with trio.fail_after(60):
        result = await backend.run(spec)
    assert result.stdout == b"ok-content\n"


async def test_resolved_dir_swapped_before_run_is_refused(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: replace the checked directory itself by a symlink to a secret before the run."""
    app = Path(paths.home, "projects/app")
    spec = _spec_with_extra(
        paths, runner_image, MountRequest(str(app), "app"), "cat /workspace/extra/app/marker"
    )
    app.rename(app.with_name("app.old"))
    app.symlink_to(Path(paths.home, "outside"))
    with trio.fail_after(60), pytest.raises(MountRefused):
        await backend.run(spec)


async def test_dir_swapped_between_create_and_start_never_runs_the_command(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: win the race between our last check and the engine's mount. Contained: the host re-checks
    after start while the command is held at the stdin gate, kills the container, refuses the run."""
    app = Path(paths.home, "projects/app")
    script = "cat /workspace/extra/app/marker > /workspace/group/leak"
    spec = _spec_with_extra(paths, runner_image, MountRequest(str(app), "app"), script)
    real_start = backend.start

    async def racing_start(cid: str) -> None:
        app.rename(app.with_name("app.old"))
        app.symlink_to(Path(paths.home, "outside"))
        await real_start(cid)

    monkeypatch.setattr(backend, "start", racing_start)
    with trio.fail_after(60), pytest.raises(MountRefused):
        await backend.run(spec)
    assert not Path(paths.workspace("main"), "leak").exists()


async def test_dir_swapped_and_restored_around_start_is_caught_inside_the_container(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: swap the checked dir for a symlink just while the engine mounts it, then put it back, so
    every host-side path check passes. Contained: the host stats the mount inside the container."""
    app = Path(paths.home, "projects/app")
    script = "cat /workspace/extra/app/marker > /workspace/group/leak"
    spec = _spec_with_extra(paths, runner_image, MountRequest(str(app), "app"), script)
    real_start = backend.start

    async def racing_start(cid: str) -> None:
        app.rename(app.with_name("app.old"))
        app.symlink_to(Path(paths.home, "outside"))
        try:
            await real_start(cid)
        finally:
            app.unlink()
            app.with_name("app.old").rename(app)

    monkeypatch.setattr(backend, "start", racing_start)
    with trio.fail_after(60), pytest.raises(MountRefused, match="not the one checked"):
        await backend.run(spec)
    assert not Path(paths.workspace("main"), "leak").exists()


def _egress_script(own: int, target: int, net: NetMode) -> str:
    """The attack an agent could run with the image's tools (busybox ``nc`` and ``wget``).

    Control: a listener the container starts itself on ``own`` answers ``nc 127.0.0.1 own``, so ``nc``
    works and 127.0.0.1 is the container's own loopback. Attack: ``nc 127.0.0.1 target`` (a port only
    the host listens on); with ``net allow`` also a proxy CONNECT and a proxied GET to that
    non-allowlisted target, which must come back as the proxy's 403.
    """
    script = (
        f"nc -l -p {own} -e echo own-listener-{own} & "
        f"until cat /proc/net/tcp* | grep -qi ':{own:04X} 0*:0000 0A'; do usleep 10000; done; "
        f"nc -w 2 127.0.0.1 {own} </dev/null; echo control=$?; "
        f"nc -w 2 127.0.0.1 {target} </dev/null; echo direct=$?; "
    )
    if net is NetMode.ALLOW:
        script += (
            f"printf 'CONNECT 127.0.0.1:{target} HTTP/1.1\\r\\n\\r\\n' | nc 127.0.0.1 3128; "
            f"echo proxy-connect=$?; wget -q -O- http://127.0.0.1:{target}/; echo proxy-get=$?; "
        )
    return script + "cat /proc/net/dev; test -S /run/appliance/egress.sock && echo has-egress-sock"


async def test_egress_to_host_loopback_and_non_allowlisted_hosts_is_contained(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: connect to listeners on the host's 127.0.0.1 with net none, and with net allow to a host
    that is not on the allowlist (directly and through the proxy). Contained: the host's listeners see no
    connection, the direct attempt is refused while the same tool reaches the container's own listener
    (so the attempt was real), and the proxy answers 403; the container has only 'lo'."""
    Path(paths.egress_allowlist).write_text("api.example.com:443\n")
    listeners = [
        *await trio.open_tcp_listeners(0, host="127.0.0.1"),
        *await trio.open_tcp_listeners(0, host="127.0.0.1"),
    ]
    own, target = (lst.socket.getsockname()[1] for lst in listeners)
    accepted: list[object] = []

    async def _accept(listener: trio.SocketListener) -> None:
        while True:
            stream = await listener.accept()
            accepted.append(stream)
            await stream.aclose()

    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept, listener)
            for net in (NetMode.NONE, NetMode.ALLOW):
                script = _egress_script(own, target, net)
                result = await _run(backend, paths, runner_image, script, network=net)
                out = result.stdout.decode()
                assert f"own-listener-{own}\ncontrol=0" in out, (out, result.stderr)
                assert "direct=1" in out, out
                if net is NetMode.ALLOW:
                    assert "HTTP/1.1 403 Forbidden" in out, out
                    assert "proxy-get=1" in out, out
                table = out[out.index(" face |") :].splitlines()[1:]
                assert [line.split(":")[0].strip() for line in table if ":" in line] == ["lo"], out
                assert ("has-egress-sock" in out) is (net is NetMode.ALLOW)  # the audited proxy only
            nursery.cancel_scope.cancel()
    finally:  # closed even when an assertion fails, so no socket leaks into the next test's report
        for listener in listeners:
            await listener.aclose()
    assert accepted == []


async def test_fork_bomb_is_contained(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: fork bomb, and 64 children under a pids limit of 16. Contained: forks fail, run ends."""
    limits = Limits(cpus=1.0, memory_mb=64, pids=16, timeout_s=3, output_cap_bytes=4096)
    spawn = "i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); done; echo spawned"
    result = await _run(backend, paths, runner_image, spawn, limits=limits)
    assert b"can't fork" in result.stderr or b"Resource temporarily unavailable" in result.stderr, result
    bomb = await _run(backend, paths, runner_image, "b(){ b | b & }; b; sleep 30", limits=limits)
    assert bomb.timed_out or bomb.exit_code != 0
    after = await _run(backend, paths, runner_image, "echo alive")
    assert after.stdout == b"alive\n"


async def test_memory_hog_is_oom_killed_and_reported(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: allocate 200 MB under a 64 MB limit. Contained: OOM kill, reported as such."""
    result = await _run(backend, paths, runner_image, "exec dd if=/dev/zero of=/dev/null bs=200M count=1")
    assert result.oom_killed, result
    assert result.exit_code == 137
    assert not result.timed_out
    plain = await _run(backend, paths, runner_image, "exit 137")
    assert not plain.oom_killed


async def test_infinite_output_is_capped(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: endless stdout and stderr. Contained: cap + marker, the writer gets SIGPIPE, run ends."""
    for script, stream in (("yes", "stdout"), ("yes >&2", "stderr")):
        result = await _run(backend, paths, runner_image, script)
        data: bytes = getattr(result, stream)
        assert result.truncated
        assert getattr(result, f"{stream}_truncated")
        assert data.endswith(TRUNCATION_MARKER)
        assert len(data) == LIMITS.output_cap_bytes + len(TRUNCATION_MARKER)
        assert not result.timed_out


async def test_sleep_past_timeout_is_killed(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """Attack: never finish. Contained: killed at the wall-clock limit, reported as timed out."""
    limits = Limits(cpus=1.0, memory_mb=64, pids=32, timeout_s=1.5, output_cap_bytes=4096)
    result = await _run(backend, paths, runner_image, "echo started; sleep 600", limits=limits)
    assert result.timed_out
    assert result.exit_code == 137
    assert result.stdout == b"started\n"


async def test_orphans_from_a_crash_are_removed(backend: SandboxBackend, runner_image: str) -> None:
    spec = build_run_spec(image=runner_image, argv=["true"], mounts=(), limits=LIMITS, group="orphan")
    labels = {"appliance.sandbox": "1", "appliance.owner_pid": "999999999", "appliance.group": "orphan"}
    with trio.fail_after(60):
        cid = await backend.create(spec, (), "appliance-orphan-test", labels)
        assert await backend.remove_orphans() >= 1
        left = await backend.list_labelled("appliance.sandbox=1")
    assert cid not in [c for c, _ in left]


async def test_engine_errors_are_typed(backend: SandboxBackend, paths: SandboxPaths) -> None:
    with trio.fail_after(60), pytest.raises(SandboxUnavailable):
        await backend.ensure_image("localhost/appliance-runner:does-not-exist")
    with trio.fail_after(60), pytest.raises(SandboxUnavailable):
        await _run(backend, paths, "localhost/appliance-runner:does-not-exist", "true")
    left = await backend.list_labelled("appliance.sandbox=1")
    assert not [labels for _, labels in left if labels.get("appliance.owner_pid") == str(os.getpid())]


async def test_missing_runner_record_falls_back_to_the_engine_and_says_so(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's own deadline fires before the runner's (negative grace): the host kills the whole
    container, no record arrives, and the result is the engine's status, flagged as such."""
    from appliance.sandbox import backend as lifecycle

    monkeypatch.setattr(lifecycle, "HOST_GRACE_S", -4.0)
    limits = Limits(cpus=1.0, memory_mb=64, pids=32, timeout_s=5, output_cap_bytes=4096)
    result = await _run(backend, paths, runner_image, "echo started; sleep 600", limits=limits)
    assert result.from_engine
    assert (result.exit_code, result.timed_out, result.stdout) == (137, True, b"started\n")
    assert "no result record" in result.runner_errors[0]
    assert (result.cpu_user_ms, result.max_rss_kb) == (0, 0)


async def test_result_record_carries_usage(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    result = await _run(
        backend, paths, runner_image, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done"
    )
    assert not result.from_engine
    assert result.runner_errors == ()
    assert result.cpu_user_ms + result.cpu_sys_ms > 0
    assert result.max_rss_kb > 0
    assert (result.stdout_bytes, result.stderr_bytes) == (5, 0)
