"""``/metrics`` mounted on a real gateway on loopback: Prometheus text, token or loopback only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from appliance.config.settings import GatewaySettings, Settings
from appliance.gateway.methods.metrics_http import is_loopback_peer, metrics_route
from appliance.gateway.server import GatewayServer
from appliance.gateway.state import GatewayState
from appliance.gateway.table import build_method_table
from appliance.store import Database, open_database

TOKEN = "metrics-token-0123456789"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "m.sqlite3")
    yield database
    database.close()


async def _get(
    db: Database, *, allow_loopback: bool, headers: dict[str, str], method: str = "GET"
) -> httpx.Response:
    settings = Settings(gateway=GatewaySettings(port=0, token=TOKEN))
    state = GatewayState(settings=settings, db=db)
    server = GatewayServer(state, build_method_table())
    server.add_http_route("/metrics", metrics_route(state, allow_loopback=allow_loopback))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            ports = await nursery.start(server.serve)
            port = ports[0] if isinstance(ports, list | tuple) else ports
            async with httpx.AsyncClient() as client:
                res = await client.request(method, f"http://127.0.0.1:{port}/metrics", headers=headers)
            await server.shutdown("test")
    return res


async def test_loopback_peer_gets_prometheus_text(db: Database) -> None:
    res = await _get(db, allow_loopback=True, headers={})
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = res.text.splitlines()
    assert "appliance_up 1" in lines
    assert "# TYPE appliance_process_resident_memory_bytes gauge" in lines
    assert any(line.startswith("appliance_process_resident_memory_bytes ") for line in lines)
    assert any(line.startswith('appliance_store_file_bytes{file="db"} ') for line in lines)
    assert "appliance_gateway_active_requests 0" in lines
    assert any(line.startswith('appliance_info{version="') for line in lines)
    assert TOKEN not in res.text


async def test_without_loopback_a_token_is_required(db: Database) -> None:
    denied = await _get(db, allow_loopback=False, headers={})
    wrong = await _get(db, allow_loopback=False, headers={"Authorization": "Bearer nope-nope-nope"})
    good = await _get(db, allow_loopback=False, headers={"Authorization": f"Bearer {TOKEN}"})
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert good.status_code == 200
    assert "appliance_up 1" in good.text


async def test_only_get_and_head(db: Database) -> None:
    post = await _get(db, allow_loopback=True, headers={}, method="POST")
    head = await _get(db, allow_loopback=True, headers={}, method="HEAD")
    assert post.status_code == 405
    assert head.status_code == 200
    assert head.content == b""


class _FakeSocket:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def getpeername(self) -> tuple[str, int]:
        return self.peer


class _FakeStream:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.socket = _FakeSocket(peer)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("192.168.1.5", False),
        ("fe80::1%eth0", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback_peer(_FakeStream((host, 1))) is loopback  # type: ignore[arg-type]
