"""``appliance status``: what this appliance is, where its data lives, and whether the gateway runs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from appliance import __version__
from appliance.cli.commands.serve import cli_overrides
from appliance.config import load_settings
from appliance.runtime import DataPaths, probe_ready, read_run_state

__all__ = ["run_status"]


def run_status(args: argparse.Namespace) -> int:
    settings, sources = load_settings(
        profile=args.profile, config_file=args.config, overrides=cli_overrides(args)
    )
    paths = DataPaths.of(settings)
    run = read_run_state(paths)
    ready = probe_ready(int(run["port"])) if run and isinstance(run.get("port"), int) else None
    sessions = None
    if paths.database.exists():
        from appliance.store import open_database
        from appliance.store.queries.sessions import count_sessions

        db = open_database(paths.database, busy_timeout_ms=settings.store.busy_timeout_ms, backups_kept=0)
        try:
            sessions = count_sessions(db)
        finally:
            db.close()
    doc: dict[str, Any] = {
        "version": __version__,
        "profile": sources.profile,
        "dataDir": str(paths.root),
        "database": str(paths.database),
        "sessions": sessions,
        "gateway": {
            "running": bool(run),
            "ready": bool(ready and ready.get("ready")),
            "pid": run.get("pid") if run else None,
            "port": run.get("port") if run else settings.gateway.port,
            "bind": settings.gateway.bind,
            "uptimeMs": ready.get("uptimeMs") if ready else None,
        },
    }
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        gw = doc["gateway"]
        state = "running" if gw["running"] else "stopped"
        if gw["running"]:
            state += f" (pid {gw['pid']}, port {gw['port']}, {'ready' if gw['ready'] else 'not ready'})"
        print(f"appliance {__version__} · profile {sources.profile}")
        print(f"data dir  {paths.root}")
        print(f"sessions  {sessions if sessions is not None else 'no database yet'}")
        print(f"gateway   {state}")
    return 0
