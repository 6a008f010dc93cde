"""Self-test of the harness that drives the real openclaw npm client."""

from __future__ import annotations

import socket

import pytest
from openclaw_client import OPENCLAW_VERSION, OpenClawCLI

pytestmark = [pytest.mark.openclaw, pytest.mark.integration]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_openclaw_version(openclaw_cli: OpenClawCLI) -> None:
    version = openclaw_cli.version()
    assert OPENCLAW_VERSION in version, version


def test_gateway_call_to_a_closed_port_is_a_transport_error(openclaw_cli: OpenClawCLI) -> None:
    port = _closed_port()
    res = openclaw_cli.call("health", url=f"ws://127.0.0.1:{port}", token="t", timeout_ms=5000)
    assert res.rc == 1, res.describe()
    assert res.error is not None, res.describe()
    assert res.error["type"] == "gateway_transport_error", res.describe()
    assert res.json["gateway"] == {"url": f"ws://127.0.0.1:{port}", "urlSource": "cli --url"}
