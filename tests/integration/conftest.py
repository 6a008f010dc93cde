"""Fixtures for integration tests that drive the REAL `openclaw` npm client.

`openclaw_cli` (session scope) installs openclaw@2026.9.6 + Node 24 once per machine into
`${APPLIANCE_TOOLS_CACHE:-~/.cache/appliance-tools}` (first run ~35 s, later runs ~0 s) and returns
an `OpenClawCLI` bound to a throwaway HOME / state dir / config for this session:

    res = openclaw_cli.call("health", url=f"ws://127.0.0.1:{port}", token="t")
    assert res.rc == 0 and res.json["ok"] is True
    res = openclaw_cli.run("health", "--json",
                           env_extra={"OPENCLAW_GATEWAY_URL": url, "OPENCLAW_GATEWAY_TOKEN": "t"})

Set APPLIANCE_SKIP_OPENCLAW=1 to skip these tests (e.g. on a machine without npm access).
Otherwise an install failure is a test ERROR, not a skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from openclaw_client import CallResult, OpenClawCLI, install_openclaw

__all__ = ["CallResult", "OpenClawCLI"]


@pytest.fixture(scope="session")
def openclaw_executable() -> Path:
    """Path of the installed `openclaw` wrapper (runs the install script once per session)."""
    if os.environ.get("APPLIANCE_SKIP_OPENCLAW") == "1":
        pytest.skip("APPLIANCE_SKIP_OPENCLAW=1: not installing or running the real openclaw client")
    return install_openclaw()


@pytest.fixture(scope="session")
def openclaw_cli(openclaw_executable: Path, tmp_path_factory: pytest.TempPathFactory) -> OpenClawCLI:
    """The real openclaw CLI with a throwaway HOME/OPENCLAW_STATE_DIR/OPENCLAW_CONFIG_PATH."""
    return OpenClawCLI(openclaw_executable, tmp_path_factory.mktemp("openclaw-cli"))
