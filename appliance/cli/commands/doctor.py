"""``appliance doctor``: is this appliance fit to run? One row per check; non-zero exit on a failed check.

Statuses: ``ok``, ``warn`` (works, but an operator should look), ``fail`` (will not work), ``skip``
(not configured). Only ``fail`` changes the exit code (1). A broken config exits 78 before any check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import attrs

from appliance.cli.commands.serve import cli_overrides
from appliance.config import Settings, load_settings
from appliance.errors import ApplianceError
from appliance.runtime import DataPaths, ensure_data_dir

__all__ = ["Check", "run_checks", "run_doctor"]

MIN_FREE_BYTES = 256 * 1024 * 1024
WARN_FREE_BYTES = 1024 * 1024 * 1024
#: a clock before this is certainly wrong (no RTC battery, no NTP yet): TLS and schedules would misbehave
EARLIEST_SANE_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z
LATEST_SANE_EPOCH = 4_102_444_800  # 2100-01-01T00:00:00Z


@attrs.frozen
class Check:
    name: str
    status: str
    detail: str


def _check_data_dir(paths: DataPaths) -> Check:
    try:
        ensure_data_dir(paths)
        probe = paths.root / f".doctor-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except (OSError, ApplianceError) as exc:
        return Check("data_dir", "fail", f"{paths.root} is not writable: {exc}")
    mode = paths.root.stat().st_mode & 0o777
    if mode & 0o077:
        return Check(
            "data_dir", "warn", f"{paths.root} is writable but mode {mode:o} lets others read it (want 700)"
        )
    return Check("data_dir", "ok", f"{paths.root} writable, mode {mode:o}")


def _check_database(settings: Settings, paths: DataPaths) -> Check:
    from appliance.store import open_database

    try:
        db = open_database(
            paths.database,
            busy_timeout_ms=settings.store.busy_timeout_ms,
            backups_kept=settings.store.backups_kept,
        )
    except ApplianceError as exc:
        return Check("database", "fail", exc.one_line())
    try:
        problems = db.quick_check()
    finally:
        db.close()
    if problems != ["ok"]:
        return Check("database", "fail", f"quick_check: {'; '.join(problems[:5])}")
    return Check("database", "ok", f"{paths.database} quick_check ok")


def _check_disk(paths: DataPaths) -> Check:
    try:
        usage = shutil.disk_usage(paths.root)
    except OSError as exc:
        return Check("disk", "fail", f"cannot stat {paths.root}: {exc.strerror}")
    free_mb = usage.free // (1024 * 1024)
    if usage.free < MIN_FREE_BYTES:
        return Check("disk", "fail", f"{free_mb} MiB free (need >= {MIN_FREE_BYTES // 2**20} MiB)")
    if usage.free < WARN_FREE_BYTES:
        return Check("disk", "warn", f"{free_mb} MiB free (low)")
    return Check("disk", "ok", f"{free_mb} MiB free")


def _check_clock(now: Callable[[], float] = time.time) -> Check:
    t = now()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    if not EARLIEST_SANE_EPOCH <= t < LATEST_SANE_EPOCH:
        return Check("clock", "fail", f"wall clock reads {stamp}: set the time (NTP or RTC) before serving")
    return Check("clock", "ok", stamp)


def _check_token(settings: Settings, paths: DataPaths) -> Check:
    if settings.gateway.auth == "none":
        return Check(
            "gateway_auth", "warn", "gateway.auth = none: anyone who can reach the port is an operator"
        )
    if settings.gateway.token:
        return Check("gateway_auth", "ok", "token configured")
    if paths.token_file.exists():
        mode = paths.token_file.stat().st_mode & 0o777
        if mode & 0o077:
            return Check("gateway_auth", "fail", f"{paths.token_file} has mode {mode:o}, want 600")
        return Check("gateway_auth", "ok", f"token in {paths.token_file}")
    return Check("gateway_auth", "ok", f"token will be generated on first start into {paths.token_file}")


def _check_bind(settings: Settings) -> Check:
    bind = settings.gateway.bind
    if bind in {"loopback", "127.0.0.1", "::1", "localhost"}:
        return Check("gateway_bind", "ok", f"{bind}:{settings.gateway.port}")
    return Check("gateway_bind", "warn", f"{bind}:{settings.gateway.port} is reachable from the network")


def _check_engine(settings: Settings) -> Check:
    backend = settings.sandbox.backend
    if backend == "none":
        return Check("container_engine", "skip", "not configured (sandbox.backend = none)")
    probe = _engine_probe()
    if probe is None:
        exe = shutil.which(backend)
        if exe is None:
            return Check("container_engine", "fail", f"{backend} not installed")
        return Check(
            "container_engine", "warn", f"{backend} at {exe}; engine probe not available in this build"
        )
    try:
        detail = probe(settings)
    except ApplianceError as exc:
        return Check("container_engine", "fail", exc.one_line())
    return Check("container_engine", "ok", detail)


def _engine_probe() -> Callable[[Settings], str] | None:
    try:
        from appliance.sandbox import probe_engine
    except ImportError:
        return None
    return probe_engine


def run_checks(settings: Settings) -> list[Check]:
    paths = DataPaths.of(settings)
    checks = [Check("config", "ok", f"profile {settings.profile}"), _check_data_dir(paths)]
    if checks[-1].status != "fail":
        checks.append(_check_database(settings, paths))
        checks.append(_check_disk(paths))
    checks += [_check_clock(), _check_token(settings, paths), _check_bind(settings), _check_engine(settings)]
    from appliance.plugins import doctor_rows  # manifest valid, command executable, listed env set

    checks += [Check(row.name, row.status, row.detail) for row in doctor_rows(settings)]
    return checks


def run_doctor(args: argparse.Namespace) -> int:
    settings, sources = load_settings(
        profile=args.profile, config_file=args.config, overrides=cli_overrides(args)
    )
    checks = run_checks(settings)
    checks[0] = Check("config", "ok", f"profile {sources.profile}; files: {', '.join(sources.files)}")
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        doc: dict[str, Any] = {"ok": not failed, "checks": [attrs.asdict(c) for c in checks]}
        print(json.dumps(doc, sort_keys=True))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{c.status.upper():5} {c.name:{width}}  {c.detail}")
        print("doctor: " + ("FAILED" if failed else "all checks passed"))
    return 1 if failed else 0
