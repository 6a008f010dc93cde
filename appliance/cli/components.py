"""Wiring of component-owned subcommands (defender, sandbox, ...).

Each component exposes ``add_<component>_commands(subparsers)`` that sets ``handler`` on its parsers.
Imports are static so PyInstaller bundles them; the components keep their own heavy imports lazy.
"""

from __future__ import annotations

import argparse

from appliance.defender.cli import add_defender_commands
from appliance.sandbox.cli import add_sandbox_commands

__all__ = ["add_all"]


def add_all(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_defender_commands(sub)
    add_sandbox_commands(sub)
