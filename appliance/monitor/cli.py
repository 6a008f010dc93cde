"""``appliance monitor``, ``appliance stats [--json]`` and ``appliance support-bundle [-o PATH]``.

Wire with ``add_monitor_commands(sub)`` in ``appliance/cli/components.py``; each parser sets ``handler``.
Heavy imports (trio, zstandard) happen inside the handlers, so ``appliance --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_monitor_commands"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", help="embedded (default), dev, or a path to a TOML profile")
    p.add_argument("--config", help="operator config file (TOML), layered over the profile")
    p.add_argument("--data-dir", help="data directory (overrides config)")


def add_monitor_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    monitor = sub.add_parser("monitor", help="live view of the running appliance (q quits)")
    _common(monitor)
    monitor.add_argument("--interval", type=float, default=2.0, help="seconds between frames")
    monitor.add_argument("--once", action="store_true", help="print one frame and exit")
    monitor.set_defaults(handler=run_monitor)

    stats = sub.add_parser("stats", help="one sample of process, host, store and gateway figures")
    _common(stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(handler=run_stats)

    bundle = sub.add_parser("support-bundle", help="write a redacted .tar.zst for an incident report")
    _common(bundle)
    bundle.add_argument("-o", "--output", help="archive path (default ./appliance-support-<time>.tar.zst)")
    bundle.set_defaults(handler=run_support_bundle)


def _context(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any] | None, str | None]:
    from appliance.cli.commands.serve import cli_overrides
    from appliance.config import load_settings
    from appliance.monitor.stats import read_token
    from appliance.runtime import DataPaths, read_run_state

    settings, _ = load_settings(profile=args.profile, config_file=args.config, overrides=cli_overrides(args))
    paths = DataPaths.of(settings)
    return settings, paths, read_run_state(paths), read_token(settings, paths.token_file)


def _collect(args: argparse.Namespace, *, with_status: bool = True) -> dict[str, Any]:
    from appliance.monitor.stats import collect_stats

    _, paths, run, token = _context(args)
    doc, _ = collect_stats(
        database=paths.database, data_dir=paths.root, run_state=run, token=token, with_status=with_status
    )
    return doc


def run_stats(args: argparse.Namespace) -> int:
    from appliance.monitor.view import render_frame

    doc = _collect(args)
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        print("\n".join(render_frame(doc)[2:]))
    return 0


def run_monitor(args: argparse.Namespace) -> int:
    from appliance.monitor.stats import collect_stats
    from appliance.monitor.view import run_view

    _, paths, run, token = _context(args)
    prev: Any = None

    def sample() -> dict[str, Any]:
        nonlocal prev, run
        from appliance.runtime import read_run_state

        run = read_run_state(paths)  # follows a restart (new pid/port)
        doc, prev = collect_stats(
            database=paths.database, data_dir=paths.root, run_state=run, token=token, prev=prev
        )
        return doc

    return run_view(sample, interval_s=max(0.2, args.interval), once=args.once)


def run_support_bundle(args: argparse.Namespace) -> int:
    from appliance.monitor.bundle import build_bundle

    settings, paths, _, _ = _context(args)
    output = Path(args.output or f"appliance-support-{time.strftime('%Y%m%d-%H%M%S')}.tar.zst")
    cli_args = [
        *(["--profile", args.profile] if args.profile else []),
        *(["--config", args.config] if args.config else []),
        "--data-dir",
        str(paths.root),
    ]
    stats = _collect(args)
    manifest = build_bundle(
        output,
        settings=settings,
        data_dir=paths.root,
        token_file=paths.token_file,
        cli_args=cli_args,
        stats=stats,
        environ=os.environ,
    )
    print(f"wrote {output} ({len(manifest['members'])} files)")
    for name, why in sorted(manifest["missing"].items()):
        print(f"  not included: {name}: {why}", file=sys.stderr)
    return 0
