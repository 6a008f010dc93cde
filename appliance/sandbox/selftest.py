"""``appliance sandbox selftest``: the attack suite against the configured engine, pass/fail per attack.

Each attack runs in a throw-away home (temp dir) with its own workspace, allowlist and planted secrets, so
an operator can run it on a live appliance without touching real data. "contained" means the attack was
refused or had no effect; anything else is an escape and the command exits 1.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from appliance.errors import ApplianceError
from appliance.sandbox.backend import RunResult, SandboxBackend
from appliance.sandbox.paths import resolve_path
from appliance.sandbox.policy import (
    Limits,
    MountRefused,
    MountRequest,
    NetMode,
    build_run_spec,
    resolve_mounts,
)
from appliance.sandbox.service import SandboxPaths, load_allowlists, run_in_sandbox

__all__ = ["AttackResult", "run_selftest"]

CANARY = "appliance-selftest-canary-4b1d"
LIMITS = Limits(cpus=1.0, memory_mb=64, pids=32, timeout_s=10, output_cap_bytes=4096)


@attrs.frozen
class AttackResult:
    name: str
    contained: bool
    detail: str


def _home(root: Path) -> SandboxPaths:
    for d in ("data", "conf", "ws", "projects/app", ".aws", "outside"):
        (root / d).mkdir(parents=True)
    (root / "projects/app/marker").write_text("ok\n")
    (root / ".aws/credentials").write_text(CANARY)
    (root / "outside/marker").write_text(CANARY)
    (root / "projects/aws-link").symlink_to(root / ".aws")
    (root / "conf/mount-allowlist").write_text("allow ~/projects rw\n")
    (root / "ws/main").mkdir()
    (root / "ws/main/.env").write_text(CANARY)
    return SandboxPaths(
        data_dir=str(root / "data"),
        runtime_dir="",
        workspaces=str(root / "ws"),
        mount_allowlist=str(root / "conf/mount-allowlist"),
        egress_allowlist=str(root / "conf/egress-allowlist"),
        image_file=str(root / "data/runner-image"),
        protected=(str(root / "data"), str(root / "conf")),
        home=str(root),
    )


Attack = Callable[[SandboxBackend, SandboxPaths, str], Awaitable[tuple[bool, str]]]


async def _sh(
    backend: SandboxBackend, paths: SandboxPaths, image: str, script: str, **kw: object
) -> RunResult:
    limits = kw.pop("limits", LIMITS)
    assert isinstance(limits, Limits)
    return await run_in_sandbox(
        backend,
        paths,
        group="main",
        argv=["sh", "-c", script],
        limits=limits,
        image=image,
        **kw,  # type: ignore[arg-type]
    )


async def _ro_root(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    r = await _sh(b, p, image, "touch /x /bin/x 2>/dev/null; echo rc=$?")
    return b"rc=1" in r.stdout, r.stdout.decode().strip()


async def _unprivileged(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    r = await _sh(b, p, image, "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    out = r.stdout.decode()
    ok = out.startswith("65534\n") and "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out
    return ok, " ".join(out.split())


async def _secrets(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    r = await _sh(
        b,
        p,
        image,
        "read s; echo len=${#s}; cat /proc/1/environ; env; cat /workspace/group/.env",
        stdin=bytearray(CANARY.encode() + b"\n"),
    )
    out = r.stdout.decode()
    return out.startswith(f"len={len(CANARY)}") and CANARY not in out, "secret on stdin only; .env masked"


async def _traversal(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    reqs = (MountRequest("~/projects/../.aws", "a"), MountRequest("~/projects/aws-link", "b"))
    r = await _sh(b, p, image, "cat /workspace/extra/*/* 2>&1; echo end", extra_mounts=reqs)
    return CANARY not in r.stdout.decode(), "'..' and symlink escapes refused by the policy"


async def _swap(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    allow, _ = load_allowlists(p)
    app = Path(p.home, "projects/app")
    mounts, _ = resolve_mounts(
        group="main",
        is_main=True,
        workspace=p.workspace("main"),
        shared=None,
        requests=[MountRequest(str(app), "app")],
        allowlist=allow,
        resolver=resolve_path,
        home=p.home,
        protected=p.protected,
    )
    spec = build_run_spec(
        image=image, argv=["cat", "/workspace/extra/app/marker"], mounts=mounts, limits=LIMITS, group="main"
    )
    _swap_for_symlink(app, Path(p.home, "outside"))
    try:
        r = await b.run(spec)
    except MountRefused as exc:
        return True, exc.one_line()
    finally:
        _swap_back(app)
    return CANARY not in r.stdout.decode(), "ran, but saw the checked directory"


def _swap_for_symlink(directory: Path, target: Path) -> None:
    directory.rename(directory.with_name(directory.name + ".old"))
    directory.symlink_to(target)


def _swap_back(directory: Path) -> None:
    directory.unlink()
    directory.with_name(directory.name + ".old").rename(directory)


def _egress_script(own: int, target: int, net: NetMode) -> str:
    """What an agent could run with the image's busybox: a control (a listener of its own on ``own``
    must answer, so ``nc`` works and 127.0.0.1 is the container's loopback), the attack (``nc`` to
    ``target``, where only the host listens) and, with ``net allow``, a proxy CONNECT to that
    non-allowlisted target (the proxy must answer 403)."""
    script = (
        f"nc -l -p {own} -e echo own-listener & "
        f"until cat /proc/net/tcp* | grep -qi ':{own:04X} 0*:0000 0A'; do usleep 10000; done; "
        f"nc -w 2 127.0.0.1 {own} </dev/null; echo control=$?; "
        f"nc -w 2 127.0.0.1 {target} </dev/null; echo direct=$?; "
    )
    if net is NetMode.ALLOW:
        script += f"printf 'CONNECT 127.0.0.1:{target} HTTP/1.1\\r\\n\\r\\n' | nc 127.0.0.1 3128; "
    return script


async def _egress(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    listeners = [
        *await trio.open_tcp_listeners(0, host="127.0.0.1"),
        *await trio.open_tcp_listeners(0, host="127.0.0.1"),
    ]
    own, target = (listener.socket.getsockname()[1] for listener in listeners)
    hits: list[int] = []

    async def _accept(listener: trio.SocketListener) -> None:
        while True:
            stream = await listener.accept()
            hits.append(1)
            await stream.aclose()

    Path(p.egress_allowlist).write_text("api.example.com:443\n")  # noqa: ASYNC240 (tiny file)
    conclusive = True
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept, listener)
            for net in (NetMode.NONE, NetMode.ALLOW):
                r = await _sh(b, p, image, _egress_script(own, target, net), network=net)
                out = r.stdout.decode()
                conclusive &= "own-listener\ncontrol=0" in out and "direct=1" in out
                if net is NetMode.ALLOW:
                    conclusive &= "HTTP/1.1 403 Forbidden" in out
            nursery.cancel_scope.cancel()
    finally:
        for listener in listeners:
            await listener.aclose()
    detail = f"host loopback listeners got {len(hits)} connections (net none, net allow, via the proxy)"
    if not conclusive:
        detail += "; INCONCLUSIVE: the control or the proxy's 403 did not show"
    return conclusive and not hits, detail


async def _fork_bomb(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    limits = attrs.evolve(LIMITS, pids=16, timeout_s=3)
    r = await _sh(b, p, image, "f(){ f | f & }; f; sleep 30", limits=limits)
    after = await _sh(b, p, image, "echo alive")
    return (
        after.stdout == b"alive\n",
        f"timed_out={r.timed_out} exit={r.exit_code}; host still runs containers",
    )


async def _memory(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    r = await _sh(b, p, image, "exec dd if=/dev/zero of=/dev/null bs=200M count=1")
    return r.oom_killed and r.exit_code == 137, f"oom_killed={r.oom_killed} exit={r.exit_code}"


async def _flood(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    r = await _sh(b, p, image, "yes")
    return r.stdout_truncated and len(
        r.stdout
    ) < 2 * LIMITS.output_cap_bytes, f"{len(r.stdout)} bytes kept, truncated"


async def _timeout(b: SandboxBackend, p: SandboxPaths, image: str) -> tuple[bool, str]:
    r = await _sh(b, p, image, "sleep 600", limits=attrs.evolve(LIMITS, timeout_s=1.5))
    return r.timed_out, f"timed_out={r.timed_out} exit={r.exit_code}"


ATTACKS: tuple[tuple[str, Attack], ...] = (
    ("write_read_only_root", _ro_root),
    ("gain_privileges", _unprivileged),
    ("read_host_secrets", _secrets),
    ("mount_traversal_and_symlink", _traversal),
    ("symlink_swap_after_check", _swap),
    ("egress_host_loopback", _egress),
    ("fork_bomb", _fork_bomb),
    ("memory_hog", _memory),
    ("infinite_output", _flood),
    ("sleep_past_timeout", _timeout),
)


async def run_selftest(backend: SandboxBackend, image: str, runtime_dir: str) -> list[AttackResult]:
    """Run every attack; an unexpected error counts as not contained (with its one-line message)."""
    root = Path(tempfile.mkdtemp(prefix="appliance-selftest-"))
    results = []
    try:
        paths = attrs.evolve(_home(root), runtime_dir=runtime_dir)
        if os.geteuid() == 0:
            os.chown(paths.workspace("main"), 65534, 65534)
        for name, attack in ATTACKS:
            try:
                with trio.fail_after(60):
                    contained, detail = await attack(backend, paths, image)
            except (ApplianceError, OSError, trio.TooSlowError) as exc:
                contained, detail = False, f"{type(exc).__name__}: {exc}"
            results.append(AttackResult(name, contained, detail))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results
