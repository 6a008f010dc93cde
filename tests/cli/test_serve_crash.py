"""kill -9 of ``serve`` during a burst of ``sessions.patch``: every call that got ``ok`` survives."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.lowlevel

from appliance.gateway.client import open_gateway_client
from appliance.store import open_database
from appliance.store.queries.sessions import get_session
from appliance.testing.process import start_serve

BURST = 400
KILL_AFTER_OK = 120


async def test_acknowledged_patches_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # lift the per-connection rate limit: this test is about durability, not throttling
    unthrottled = {
        "APPLIANCE_GATEWAY_RATE_LIMIT_PER_S": "100000",
        "APPLIANCE_GATEWAY_RATE_LIMIT_BURST": "100000",
    }
    serve = start_serve(data, env=unthrottled)
    acknowledged: dict[str, str] = {}
    killed = trio.Event()

    async def patch(client, i: int) -> None:  # type: ignore[no-untyped-def]
        key = f"agent:main:crash-{i}"
        label = f"crash label {i}"
        try:
            await client.call("sessions.patch", {"key": key, "label": label})
        except Exception:  # GatewayCallError, or the connection dying with the process
            return  # no ack: may or may not be stored
        if not killed.is_set():
            acknowledged[key] = label
        if len(acknowledged) >= KILL_AFTER_OK and not killed.is_set():
            serve.kill()
            killed.set()

    try:
        with trio.fail_after(60):
            try:
                async with (
                    open_gateway_client(serve.url, serve.token, scopes=["operator.admin"]) as client,
                    trio.open_nursery() as nursery,
                ):
                    for i in range(BURST):
                        nursery.start_soon(patch, client, i)
                        if i % 20 == 0:
                            await trio.lowlevel.checkpoint()
            except Exception:  # the connection dies with the process
                pass
    finally:
        serve.kill()

    assert killed.is_set(), "burst finished before the kill; raise BURST"
    assert len(acknowledged) >= KILL_AFTER_OK

    restarted = start_serve(data)  # recovery path: the server opens the crashed database
    restarted.terminate()
    db = open_database(data / "appliance.sqlite3")
    try:
        assert db.quick_check() == ["ok"]
        missing = [
            key
            for key, label in acknowledged.items()
            if (row := get_session(db, key)) is None or row.label != label
        ]
    finally:
        db.close()
    assert missing == []
