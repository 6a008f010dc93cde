"""``appliance version``."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from appliance import __version__

__all__ = ["run_version", "version_info"]


def version_info() -> dict[str, str]:
    return {
        "name": "appliance",
        "version": __version__,
        "python": platform.python_version(),
        "arch": platform.machine(),
        "frozen": "yes" if getattr(sys, "frozen", False) else "no",
    }


def run_version(args: argparse.Namespace) -> int:
    info = version_info()
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        print(f"appliance {info['version']} (python {info['python']}, {info['arch']})")
    return 0
