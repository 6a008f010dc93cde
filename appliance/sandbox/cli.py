"""``appliance sandbox build-image | run | selftest | doctor``: the operator's handle on the sandbox.

The lead wires :func:`add_sandbox_commands` into the top-level parser; every parser sets ``handler``
(``handler(args) -> exit code``). ``python -m appliance.sandbox.cli ...`` runs the same commands alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["add_sandbox_commands", "main"]


def _settings(args: argparse.Namespace) -> Any:
    from appliance.config import load_settings

    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    settings, _ = load_settings(
        profile=getattr(args, "profile", None), config_file=getattr(args, "config", None), overrides=overrides
    )
    return settings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", help="embedded (default), dev, or a path to a TOML profile")
    p.add_argument("--config", help="operator config file (TOML)")
    p.add_argument("--data-dir", help="data directory (overrides config)")
    p.add_argument("--backend", choices=("podman", "docker"), help="engine (default: sandbox.backend)")
    p.add_argument("--socket", help="engine API socket (default: sandbox.socket, else our own)")


def add_sandbox_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sandbox`` and its subcommands on the top-level ``subparsers``."""
    sandbox = subparsers.add_parser("sandbox", help="build the runner image, run a command in the sandbox")
    sub = sandbox.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    sub.required = True

    build = sub.add_parser("build-image", help="build the runner image locally (FROM scratch, reproducible)")
    _common(build)
    build.add_argument("--context", help="image/runner directory (default: the source tree's)")
    build.add_argument(
        "--tools", choices=("none", "shell"), help="tools in the image (default: sandbox.tools)"
    )
    build.set_defaults(handler=_cmd_build_image)

    run = sub.add_parser("run", help="run a command under a group's policy: sandbox run -- CMD...")
    _common(run)
    run.add_argument("--group", default="main", help="group folder (default main)")
    run.add_argument("--net", choices=("none", "allow"), help="network (default: sandbox.network)")
    run.add_argument("--image", help="image tag (default: sandbox.image, else the last built one)")
    run.add_argument("--timeout", type=float, help="wall-clock seconds (default: sandbox.timeout_s)")
    run.add_argument("--memory-mb", type=int, help="memory limit (default: sandbox.memory_mb)")
    run.add_argument("--stdin", action="store_true", help="pass this process's stdin to the command")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    run.set_defaults(handler=_cmd_run)

    selftest = sub.add_parser(
        "selftest", help="run the attack suite against the engine; pass/fail per attack"
    )
    _common(selftest)
    selftest.add_argument("--image", help="image tag (default: the last built runner image)")
    selftest.add_argument("--json", action="store_true", help="machine-readable output")
    selftest.set_defaults(handler=_cmd_selftest)

    doctor = sub.add_parser("doctor", help="which engine answers, its version, runtime, image")
    _common(doctor)
    doctor.set_defaults(handler=_cmd_doctor)


def _backend_and_socket(args: argparse.Namespace, settings: Any) -> tuple[str, str]:
    backend = args.backend or (settings.sandbox.backend if settings.sandbox.backend != "none" else "podman")
    return backend, args.socket or settings.sandbox.socket


def _cmd_build_image(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appliance.sandbox.image import build_runner_image
    from appliance.sandbox.podman import podman_env
    from appliance.sandbox.service import SandboxPaths

    settings = _settings(args)
    paths = SandboxPaths.of(settings)
    built = build_runner_image(
        podman_env=podman_env(paths.runtime_dir),
        context_dir=Path(args.context) if args.context else None,
        tools=args.tools or settings.sandbox.tools,
    )
    os.makedirs(os.path.dirname(paths.image_file), mode=0o700, exist_ok=True)
    Path(paths.image_file).write_text(built.tag + "\n", "utf-8")
    print(f"{built.tag} {built.image_id}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import trio

    from appliance.sandbox.policy import NetMode
    from appliance.sandbox.service import limits_of, open_sandbox_service

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("appliance sandbox run: missing command (sandbox run -- CMD...)", file=sys.stderr)
        return 2
    settings = _settings(args)
    backend_name, socket = _backend_and_socket(args, settings)
    stdin = bytearray(sys.stdin.buffer.read()) if args.stdin else bytearray()
    limits = limits_of(settings.sandbox, timeout_s=args.timeout, memory_mb=args.memory_mb)

    async def _run() -> Any:
        async with open_sandbox_service(
            settings, backend=backend_name, socket=socket, warm_pool=False
        ) as service:
            return await service.run(
                group=args.group,
                argv=argv,
                limits=limits,
                image=args.image,
                network=NetMode(args.net) if args.net else None,
                stdin=stdin,
            )

    result = trio.run(_run)
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    notes = [f"exit {result.exit_code}", f"{result.duration_ms} ms"]
    if not result.from_engine:
        notes.append(f"cpu {result.cpu_user_ms + result.cpu_sys_ms} ms, max rss {result.max_rss_kb} kB")
    notes += [
        word
        for flag, word in (
            (result.timed_out, "timed out"),
            (result.oom_killed, "OOM-killed"),
            (result.truncated, "output truncated"),
            (result.from_engine, "no runner record: exit status from the engine"),
        )
        if flag
    ]
    notes += list(result.runner_errors)
    print(f"[sandbox: {', '.join(notes)}]", file=sys.stderr)
    return result.exit_code if 0 <= result.exit_code < 256 else 1


def _cmd_selftest(args: argparse.Namespace) -> int:
    import json

    import attrs
    import trio

    from appliance.sandbox.selftest import run_selftest
    from appliance.sandbox.service import SandboxPaths, current_image, open_backend

    settings = _settings(args)
    paths = SandboxPaths.of(settings)
    backend_name, socket = _backend_and_socket(args, settings)
    image = args.image or current_image(paths, settings.sandbox)

    async def _run() -> Any:
        async with open_backend(backend_name, socket=socket, runtime_dir=paths.runtime_dir) as backend:
            await backend.ensure_image(image)
            return backend.name, await run_selftest(backend, image, paths.runtime_dir)

    engine, results = trio.run(_run)
    escaped = [r for r in results if not r.contained]
    if args.json:
        doc = {"engine": engine, "ok": not escaped, "attacks": [attrs.asdict(r) for r in results]}
        print(json.dumps(doc, sort_keys=True))
    else:
        for r in results:
            print(f"{'PASS' if r.contained else 'FAIL':5} {r.name:32} {r.detail}")
        print(f"sandbox selftest ({engine}): {len(results) - len(escaped)}/{len(results)} contained")
    return 1 if escaped else 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    import shutil

    import trio

    from appliance.errors import ApplianceError
    from appliance.sandbox.service import SandboxPaths, current_image, open_backend

    settings = _settings(args)
    paths = SandboxPaths.of(settings)
    backend_name, socket = _backend_and_socket(args, settings)
    failed = False

    def line(status: str, name: str, detail: str) -> None:
        nonlocal failed
        failed = failed or status == "FAIL"
        print(f"{status:5} {name:14} {detail}")

    for tool in ("podman", "runc", "busybox"):
        where = shutil.which(tool)
        line("OK" if where else "WARN", tool, where or "not installed")

    async def _probe() -> None:
        async with open_backend(backend_name, socket=socket, runtime_dir=paths.runtime_dir) as backend:
            line("OK", "engine", f"{backend.name} {await backend.version()}")
            try:
                image = current_image(paths, settings.sandbox)
                await backend.ensure_image(image)
                line("OK", "image", image)
            except ApplianceError as exc:
                line("FAIL", "image", exc.one_line())

    try:
        trio.run(_probe)
    except ApplianceError as exc:
        line("FAIL", "engine", exc.one_line())
    print("sandbox doctor: " + ("FAILED" if failed else "all checks passed"))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m appliance.sandbox.cli``): same commands, same exit codes."""
    from appliance.errors import ApplianceError

    parser = argparse.ArgumentParser(prog="appliance")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_sandbox_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ApplianceError as exc:
        print(f"appliance: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    except BaseExceptionGroup as group:
        for inner in group.exceptions:
            if isinstance(inner, ApplianceError):
                print(f"appliance: {inner.one_line()}", file=sys.stderr)
                return int(inner.exit_code)
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
