"""``appliance serve``: run the gateway until SIGINT/SIGTERM, then shut down gracefully.

Shutdown order: stop accepting, tell clients (``shutdown`` event), let in-flight requests finish within
``gateway.shutdown_grace_s``, close sockets, then checkpoint and close the database.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

import attrs

from appliance.config import Settings, load_settings
from appliance.errors import ApplianceError
from appliance.log import configure, get_logger
from appliance.runtime import (
    DataPaths,
    ensure_data_dir,
    ensure_gateway_token,
    remove_run_state,
    write_run_state,
)

__all__ = ["cli_overrides", "run_serve"]

log = get_logger("appliance.serve")


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    gateway: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        gateway["port"] = args.port
    if getattr(args, "bind", None):
        gateway["bind"] = args.bind
    if gateway:
        overrides["gateway"] = gateway
    return overrides


def run_serve(args: argparse.Namespace) -> int:
    settings, sources = load_settings(
        profile=args.profile, config_file=args.config, overrides=cli_overrides(args)
    )
    configure(level=settings.log_level)
    paths = DataPaths.of(settings)
    ensure_data_dir(paths)
    token = ensure_gateway_token(settings, paths)
    if token is not None:
        settings = attrs.evolve(settings, gateway=attrs.evolve(settings.gateway, token=token.token))
        if token.origin == "generated":
            print(f"appliance: generated a gateway token, stored (0600) in {token.path}", file=sys.stderr)
        elif token.origin == "file":
            print(f"appliance: gateway token in {token.path}", file=sys.stderr)
    from appliance.store import open_database

    db = open_database(
        paths.database,
        busy_timeout_ms=settings.store.busy_timeout_ms,
        backups_kept=settings.store.backups_kept,
    )
    try:
        import trio

        trio.run(_serve, settings, db, paths, sources.profile)
    finally:
        db.close()
        remove_run_state(paths)
        log.info("serve_stopped")
    return 0


async def _serve(settings: Settings, db: Any, paths: DataPaths, profile: str) -> None:
    import trio

    from appliance.artifact.sdnotify import notifier_from_env
    from appliance.gateway.server import GatewayServer
    from appliance.gateway.state import GatewayState
    from appliance.gateway.table import build_method_table
    from appliance.runtime.services import Services, boot_needs_services

    notifier = notifier_from_env()  # systemd Type=notify + WatchdogSec; a no-op elsewhere

    state = GatewayState(settings=settings, db=db)
    baseline = paths.root / "defender" / "baseline.json"
    if baseline.exists():  # checked before serving: policy "refuse" stops here with exit 78
        state.integrity = await _check_integrity(settings, baseline)
    server = GatewayServer(state, build_method_table())
    from appliance.gateway.methods.metrics_http import metrics_route

    server.add_http_route("/metrics", metrics_route(state))  # Prometheus text; Bearer token or loopback
    if settings.gateway.http_chat_completions:
        server.add_http_route("/v1/chat/completions", _chat_completions_route(state))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            state.services = Services(state, nursery)
            if boot_needs_services(db):  # resume queued work, report crashed turns, run schedules
                state.services.start_soon()
            ports = await nursery.start(server.serve)
            port = ports[0] if isinstance(ports, list | tuple) else ports
            write_run_state(
                paths,
                {
                    "pid": os.getpid(),
                    "port": port,
                    "bind": settings.gateway.bind,
                    "startedAt": int(time.time() * 1000),
                    "profile": profile,
                    "dataDir": str(paths.root),
                },
            )
            log.info(
                "gateway_listening",
                port=port,
                bind=settings.gateway.bind,
                profile=profile,
                url=f"ws://127.0.0.1:{port}/",
            )
            if baseline.exists():
                nursery.start_soon(_recheck_integrity, state, baseline)
            channels = settings.channels
            if (
                channels.telegram.enabled
                or channels.whatsapp.enabled
                or channels.webhook.enabled
                or settings.plugins.enabled  # plugin sidecars start with the channels (open_channels)
            ):
                from appliance.runtime.channels import open_channels

                started = open_channels(state, nursery)  # each enabled adapter under the watchdog
                log.info("channels_ready", channels=sorted(started.adapters))
            notifier.ready(f"listening on port {port}")
            release_startup_memory()
            if notifier.watchdog_interval_s:
                nursery.start_soon(_feed_watchdog, notifier)
            async for signum in signals:
                notifier.stopping()
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                await server.shutdown(reason="signal")
                nursery.cancel_scope.cancel()
                break


def release_startup_memory() -> None:
    """Hand the heap that start-up garbage left behind back to the kernel (glibc only; else a no-op).

    Why: imports and migrations leave freed-but-retained malloc pages; on a 1 GB board the idle RSS is
    the figure that counts, and it is measured after start-up.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


def _chat_completions_route(state: Any) -> Any:
    """``POST /v1/chat/completions`` on the gateway port, through the same agent runtime as chat.send."""

    async def route(stream: Any, request: Any, body: bytes) -> int:
        from appliance.gateway.methods.chat import runtime_ready
        from appliance.gateway.openai_http import OpenAIHttpConfig, respond_chat_completions

        gateway = state.settings.gateway
        config = OpenAIHttpConfig(enabled=True, token=gateway.token, auth_mode=gateway.auth)
        return await respond_chat_completions(stream, request, body, await runtime_ready(state), config)

    return route


async def _feed_watchdog(notifier: Any) -> None:
    """WATCHDOG=1 at the interval systemd asked for: a hung event loop stops feeding and gets restarted."""
    import trio

    while True:
        notifier.watchdog()
        await trio.sleep(notifier.watchdog_interval_s)


async def _check_integrity(settings: Settings, baseline: Any) -> dict[str, Any]:
    """Hash the baselined runtime files off the event loop; apply ``defender.integrity_policy``.

    Raises IntegrityMismatch (a ConfigError, exit 78) when the policy is ``refuse`` and files differ."""
    import trio

    from appliance.defender.integrity import check_baseline, enforce

    key = settings.defender.integrity_verify_key or None
    report = await trio.to_thread.run_sync(lambda: check_baseline(baseline, verify_key=key))
    degraded = enforce(report, settings.defender.integrity_policy)
    doc = {**report.to_dict(), "degraded": degraded}
    if degraded:
        log.warning("integrity_mismatch", **doc)
    else:
        log.info("integrity_ok", manifest_sha256=report.manifest_sha256)
    return doc


async def _recheck_integrity(state: Any, baseline: Any) -> None:
    import trio

    while True:
        await trio.sleep(state.settings.defender.integrity_interval_s)
        try:
            state.integrity = await _check_integrity(state.settings, baseline)
        except ApplianceError as exc:  # policy refuse: keep serving (already running), report loudly
            state.integrity = {"ok": False, "degraded": True, "error": exc.one_line()}
            log.error("integrity_mismatch", error=exc.one_line())  # noqa: TRY400 -- an outcome, not a bug
