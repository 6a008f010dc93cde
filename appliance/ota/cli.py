"""``appliance update SOURCE | rollback | slots | commit | boot-check``: the operator's OTA handle.

The lead wires :func:`add_ota_commands` into ``appliance/cli/components.py``. Every parser sets
``handler(args) -> exit code``. Output is one line (``--json`` for machines); errors are one line on
stderr with the exit code of their class:

    0   done (also: nothing to do, already rolled back)
    1   the new version failed its trial and was rolled back (TrialFailed)
    65  artifact refused: signature, manifest, expiry, downgrade, hash (ArtifactRejected) or self-check
    66  nothing to roll back to
    69  update source unreachable (FetchFailed; retry resumes the download)
    74  not enough disk (says how much is needed), or the slot layout is corrupt
    75  another update holds the lock, or (commit without --wait) the trial is not healthy yet

Settings not yet in ``Settings`` are flags (an ``ota`` settings section, once added, supplies the
defaults): ``--root`` (``ota.root``, default /opt/appliance), ``--public-key`` (default: the keys compiled into the binary),
``--restart-command``/``--stop-command`` (default: systemctl when systemd runs), ``--trial-deadline``,
``--max-boots``, ``--health-url`` (default: the gateway's ``/ready`` on its configured port).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from appliance.errors import ExitCode

__all__ = ["add_ota_commands"]

DEFAULT_ROOT = "/opt/appliance"


def _common(p: argparse.ArgumentParser, *, service: bool = True) -> None:
    p.add_argument("--profile", help="embedded (default), dev, or a path to a TOML profile")
    p.add_argument("--config", help="operator config file (TOML)")
    p.add_argument("--data-dir", help="data directory (overrides config)")
    p.add_argument("--root", help=f"appliance root with releases/ (ota.root, default {DEFAULT_ROOT})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if service:
        p.add_argument("--public-key", help="minisign public key line or .pub file (default: embedded keys)")
        p.add_argument("--restart-command", help="restart the service (default: systemctl restart appliance)")
        p.add_argument("--stop-command", help="stop the service (default: systemctl stop appliance)")
        p.add_argument(
            "--health-url", help="trial health URL (default: http://127.0.0.1:<gateway port>/ready)"
        )
        p.add_argument(
            "--trial-deadline", type=int, help="seconds to become healthy (ota.trial_deadline_s, 300)"
        )
        p.add_argument("--max-boots", type=int, help="trial boots before reverting (ota.max_boots, 3)")


def add_ota_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``update``, ``rollback``, ``slots``, ``commit`` and ``boot-check``."""
    update = subparsers.add_parser("update", help="install a signed update (file, directory or URL) in trial")
    _common(update)
    update.add_argument("source", metavar="SOURCE", help="manifest/archive file, directory, or http(s) URL")
    update.add_argument("--no-wait", action="store_true", help="do not wait for the trial to commit")
    update.set_defaults(handler=_cmd_update)

    rollback = subparsers.add_parser("rollback", help="go back to the previous version and its database")
    _common(rollback)
    rollback.set_defaults(handler=_cmd_rollback)

    slots = subparsers.add_parser("slots", help="show current/previous slots, trial state and history")
    _common(slots, service=False)
    slots.set_defaults(handler=_cmd_slots)

    commit = subparsers.add_parser("commit", help="trial check: commit if healthy, revert if failed or late")
    _common(commit)
    commit.add_argument("--wait", action="store_true", help="poll until committed or reverted")
    commit.set_defaults(handler=_cmd_commit)

    boot = subparsers.add_parser(
        "boot-check", help="before start (ExecStartPre): count a trial boot or revert"
    )
    _common(boot)
    boot.set_defaults(handler=_cmd_boot_check)


def _settings(args: argparse.Namespace) -> Any:
    from appliance.config import load_settings

    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    settings, _ = load_settings(
        profile=getattr(args, "profile", None), config_file=getattr(args, "config", None), overrides=overrides
    )
    return settings


def _trust(value: str | None) -> Any:
    from appliance.artifact.keys import TrustSet
    from appliance.artifact.trusted_keys import EMBEDDED_PUBLIC_KEYS

    if not value:
        return TrustSet.of(EMBEDDED_PUBLIC_KEYS)
    if os.path.exists(value):
        lines = [ln.strip() for ln in Path(value).read_text().splitlines() if ln.strip()]
        value = next(ln for ln in lines if not ln.startswith("untrusted comment:"))
    return TrustSet.of([value])


def _argv(value: str | None, default: list[str] | None) -> list[str] | None:
    if value is None:
        return default
    return shlex.split(value) or None


def _pick(args: argparse.Namespace, ota: Any, name: str, default: Any, *, setting: str | None = None) -> Any:
    """Flag, else the ``ota.<setting>`` value (when that settings section exists), else the default."""
    value = getattr(args, name, None)
    if value is None:
        value = getattr(ota, setting or name, None)
    return default if value is None or value == "" else value


def _updater(args: argparse.Namespace) -> Any:
    from appliance.ota.fetch import Progress
    from appliance.ota.trial import default_service_commands
    from appliance.ota.updater import Updater, UpdaterConfig

    settings = _settings(args)
    data_dir = Path(os.path.expanduser(settings.data_dir))
    ota = getattr(settings, "ota", None)  # the settings section the lead may add; flags win over it
    root = Path(args.root or getattr(ota, "root", None) or DEFAULT_ROOT)
    restart, stop = default_service_commands()
    config = UpdaterConfig(
        root=root,
        data_dir=data_dir,
        trust=_trust(_pick(args, ota, "public_key", None)),
        restart_command=_argv(_pick(args, ota, "restart_command", None), restart),
        stop_command=_argv(_pick(args, ota, "stop_command", None), stop),
        health_url=_pick(args, ota, "health_url", f"http://127.0.0.1:{settings.gateway.port}/ready"),
        trial_deadline_s=int(_pick(args, ota, "trial_deadline", 300, setting="trial_deadline_s")),
        max_boots=int(_pick(args, ota, "max_boots", 3)),
    )
    return Updater(config, progress=Progress())


def _print(args: argparse.Namespace, outcome: Any) -> int:
    import attrs

    if args.json:
        print(json.dumps(attrs.asdict(outcome), sort_keys=True))
    else:
        print(f"appliance: {outcome.message}")
    return int(ExitCode.OK)


def _cmd_update(args: argparse.Namespace) -> int:
    return _print(args, _updater(args).update(args.source, wait_for_commit=not args.no_wait))


def _cmd_rollback(args: argparse.Namespace) -> int:
    return _print(args, _updater(args).rollback())


def _cmd_commit(args: argparse.Namespace) -> int:
    outcome = _updater(args).commit(wait=args.wait)
    _print(args, outcome)
    return int(ExitCode.TEMPFAIL) if outcome.action == "wait" else int(ExitCode.OK)


def _cmd_boot_check(args: argparse.Namespace) -> int:
    return _print(args, _updater(args).boot_check())


def _cmd_slots(args: argparse.Namespace) -> int:
    status = _updater(args).status()
    if args.json:
        print(json.dumps(status, sort_keys=True, indent=1))
        return int(ExitCode.OK)
    out = sys.stdout
    out.write(f"root      {status['root']}\n")
    out.write(f"current   {status['current'] or '-'}\n")
    out.write(f"previous  {status['previous'] or '-'}\n")
    trial = status["trial"]
    if trial:
        out.write(
            f"trial     {trial['version']} boots {trial['boots']}/{trial['max_boots']}, deadline {trial['deadline']}\n"
        )
    else:
        out.write("trial     none (committed)\n" if status["committed"] else "trial     none\n")
    for slot in status["slots"]:
        out.write(
            f"  {slot['version']:<12} {slot['role'] or '-':<9} {slot['size_bytes'] / 1e6:8.1f} MB  "
            f"signed by {slot['signed_by'] or '?'}  snapshot {'yes' if slot['snapshot'] else 'no'}\n"
        )
    return int(ExitCode.OK)


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.ota ...``: the same commands without the top-level CLI (tests, recovery)."""
    from appliance.errors import ApplianceError

    parser = argparse.ArgumentParser(prog="appliance")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_ota_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ApplianceError as exc:
        print(f"appliance: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
