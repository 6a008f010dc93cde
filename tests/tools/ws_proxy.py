"""Logging WebSocket proxy: sits between a WS client and a WS server and records every frame.

Used to capture raw OpenClaw gateway frames (hello-ok, events, error frames) exactly as they go
over the wire, which `openclaw gateway call --json` does not show (it prints only the payload).

    python tests/tools/ws_proxy.py --listen 127.0.0.1:18822 --upstream ws://127.0.0.1:18821/ \
        --log /tmp/frames.jsonl

Every frame becomes one JSON line in the log:
    {"ts": <epoch s>, "conn": <n>, "dir": "C->S" | "S->C", "frame": <parsed JSON or raw text>}
plus {"conn": n, "event": "open" | "close", ...} markers. Binary frames are logged as
{"binary": <len>}. Only loopback addresses are meant to be used.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from typing import IO, Any

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)


class FrameLog:
    """Appends JSON lines to a file, one per frame, flushing each line."""

    def __init__(self, fh: IO[str]) -> None:
        self._fh = fh

    def write(self, record: dict[str, Any]) -> None:
        record = {"ts": round(time.time(), 3), **record}
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()


def _decode(message: str | bytes) -> Any:
    if isinstance(message, bytes):
        return {"binary": len(message)}
    try:
        return json.loads(message)
    except ValueError:
        return message


async def _pump(
    src: WebSocketConnection,
    dst: WebSocketConnection,
    direction: str,
    conn: int,
    log: FrameLog,
    cancel: trio.CancelScope,
) -> None:
    try:
        while True:
            message = await src.get_message()
            log.write({"conn": conn, "dir": direction, "frame": _decode(message)})
            await dst.send_message(message)
    except ConnectionClosed as exc:
        reason = exc.reason
        log.write(
            {
                "conn": conn,
                "event": "close",
                "side": direction.split("->")[0],
                "code": getattr(reason, "code", None),
                "reason": getattr(reason, "reason", None),
            }
        )
        # Mirror the close to the other side.
        code = getattr(reason, "code", None) or 1000
        if code in (1005, 1006):  # reserved codes that must not be sent
            code = 1000
        with trio.move_on_after(2):
            await dst.aclose(code=code, reason=getattr(reason, "reason", None) or "")
    finally:
        cancel.cancel()


async def run_proxy(host: str, port: int, upstream: str, log: FrameLog) -> None:
    counter = itertools.count(1)

    async def handler(request: WebSocketRequest) -> None:
        conn = next(counter)
        log.write({"conn": conn, "event": "open", "path": request.path})
        client = await request.accept()
        try:
            async with open_websocket_url(upstream) as server, trio.open_nursery() as nursery:
                scope = nursery.cancel_scope
                nursery.start_soon(_pump, client, server, "C->S", conn, log, scope)
                nursery.start_soon(_pump, server, client, "S->C", conn, log, scope)
        except (OSError, ConnectionClosed) as exc:
            log.write({"conn": conn, "event": "upstream-error", "error": repr(exc)})
            with trio.move_on_after(2):
                await client.aclose(code=1011, reason="upstream unavailable")

    await serve_websocket(handler, host, port, ssl_context=None, max_message_size=64 * 1024 * 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on")
    parser.add_argument("--upstream", required=True, help="ws:// URL of the real server")
    parser.add_argument("--log", default="-", help="JSON-lines output file ('-' = stdout)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    fh: IO[str] = sys.stdout if args.log == "-" else open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    try:
        trio.run(run_proxy, host or "127.0.0.1", int(port), args.upstream, FrameLog(fh))
    except KeyboardInterrupt:
        pass
    finally:
        if fh is not sys.stdout:
            fh.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
