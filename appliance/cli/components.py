"""Wiring of component-owned subcommands (defender, sandbox, ...).

Each component exposes ``add_<component>_commands(subparsers)`` that sets ``handler`` on its parsers.
Imports are static (PyInstaller sees them) but deferred: a component's CLI module is imported only when its
command is the one being run, or for ``--help``. ``appliance serve`` therefore loads none of them, which
keeps a megabyte of idle RSS off the gateway.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TypeAlias

__all__ = ["COMPONENT_COMMANDS", "add_all"]

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Adder: TypeAlias = Callable[[Subparsers], None]


def _channel(sub: Subparsers) -> None:
    from appliance.channels.cli import add_channel_commands

    add_channel_commands(sub)


def _defender(sub: Subparsers) -> None:
    from appliance.defender.cli import add_defender_commands

    add_defender_commands(sub)


def _artifact(sub: Subparsers) -> None:
    from appliance.artifact.cli import add_artifact_commands

    add_artifact_commands(sub)


def _monitor(sub: Subparsers) -> None:
    from appliance.monitor.cli import add_monitor_commands

    add_monitor_commands(sub)


def _ota(sub: Subparsers) -> None:
    from appliance.ota import add_ota_commands

    add_ota_commands(sub)


def _sandbox(sub: Subparsers) -> None:
    from appliance.sandbox.cli import add_sandbox_commands

    add_sandbox_commands(sub)


#: component -> (its top-level commands with one-line help, registration)
COMPONENT_COMMANDS: dict[str, tuple[dict[str, str], Adder]] = {
    "artifact": ({"artifact": "build, sign and verify release artifacts"}, _artifact),
    "channel": ({"channel": "run or test a channel adapter (telegram, whatsapp, webhook)"}, _channel),
    "defender": (
        {"defender": "score prompts and commands, integrity baseline, quarantine ledger"},
        _defender,
    ),
    "monitor": (
        {
            "monitor": "live terminal view of the appliance and its host",
            "stats": "one snapshot of the appliance's figures (--json for scripts)",
            "support-bundle": "write one archive for support: redacted config, logs, status, doctor",
        },
        _monitor,
    ),
    "ota": (
        {
            "update": "install a signed update (file, directory or URL) in trial",
            "rollback": "go back to the previous version and its database",
            "slots": "show current/previous slots, trial state and history",
            "commit": "trial check: commit if healthy, revert if failed or late",
            "boot-check": "before start (ExecStartPre): count a trial boot or revert",
        },
        _ota,
    ),
    "sandbox": ({"sandbox": "build the runner image, run a command in the sandbox"}, _sandbox),
}


def add_all(sub: Subparsers, argv: Sequence[str] | None = None) -> None:
    """Register every component command; load only the component ``argv`` selects (all for help)."""
    chosen = next((arg for arg in (argv or ()) if not arg.startswith("-")), None)
    wants_help = argv is None or any(arg in {"-h", "--help"} for arg in argv) or chosen is None
    for commands, adder in COMPONENT_COMMANDS.values():
        if wants_help or chosen in commands:
            adder(sub)
        else:
            for name, help_text in commands.items():
                sub.add_parser(name, help=help_text, add_help=False)
