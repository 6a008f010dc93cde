"""Agent turn benchmark: turn overhead p50/p99 and messages/s through the whole path.

The whole path is in-process and real: a WebSocket client -> the gateway (protocol, dispatch,
``chat.send``) -> the agent runtime (session, turn row, transcript, gate, path) -> the store (SQLite WAL)
-> ``chat`` events broadcast back to the client. Two paths are measured:

- ``tool``: ``/tool time_now`` (no model at all);
- ``model``: an *instant* in-process model (streams three deltas and usage, no I/O, no sleep), so the
  figure is everything except the model; with ``--http-model`` the model is our loopback
  OpenAI-compatible server instead and its measured time is subtracted per turn.

Latency = from sending ``chat.send`` to receiving the ``final`` chat event, sequentially (one turn at a
time). Throughput = ``--concurrency`` clients, each on its own session, sending back to back.

    .venv/bin/python bench/bench_agent.py [--turns 300] [--concurrency 8] [--http-model] [--no-queue]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from appliance.agent import AgentRuntime, Completion, QueueTurnGate, Usage
from appliance.agent.providers.openai import OpenAIProvider, TextSink
from appliance.config.settings import GatewaySettings, Settings
from appliance.gateway.client import GatewayClient, open_gateway_client
from appliance.gateway.methods.chat import attach_runtime
from appliance.gateway.server import serve_gateway
from appliance.gateway.state import GatewayState
from appliance.gateway.table import build_method_table
from appliance.log import configure
from appliance.queue import MemoryJournal, open_run_queue, queue_options
from appliance.store import open_database
from appliance.testing.openai_server import FakeModelServer, ModelReply

TOKEN = "bench-token-0123456789"


class InstantModel:
    """A ChatProvider that answers at once: three deltas, usage, no I/O."""

    name = "instant"
    base_url = "inproc://instant"
    models = ("instant-1",)

    def __init__(self) -> None:
        self.model_s = 0.0

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        on_text: TextSink | None = None,
    ) -> Completion:
        if on_text is not None:
            for piece in ("Hello", ", ", "world"):
                await on_text(piece)
        return Completion("Hello, world", (), "stop", Usage(12, 3, 0, 15), "instant-1", 1)

    async def aclose(self) -> None:
        return None


class TimedProvider:
    """Wraps a provider and adds up the time spent inside ``complete`` (the model's share)."""

    def __init__(self, inner: OpenAIProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.base_url = inner.base_url
        self.models = inner.models
        self.model_s = 0.0

    async def complete(
        self, messages: Any, *, tools: Any = (), on_text: TextSink | None = None
    ) -> Completion:
        started = time.perf_counter()
        try:
            return await self.inner.complete(messages, tools=tools, on_text=on_text)
        finally:
            self.model_s += time.perf_counter() - started

    async def aclose(self) -> None:
        await self.inner.aclose()


async def one_turn(client: GatewayClient, session: str, message: str, run_id: str) -> None:
    await client.call("chat.send", {"sessionKey": session, "message": message, "idempotencyKey": run_id})
    while True:
        frame = await client.event_stream.receive()
        payload = frame.get("payload") or {}
        if (
            frame.get("event") == "chat"
            and payload.get("runId") == run_id
            and payload.get("state") != "delta"
        ):
            if payload["state"] != "final":
                raise RuntimeError(f"turn failed: {payload}")
            return


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def measure(url: str, provider: Any, path: str, turns: int, concurrency: int) -> None:
    message = "/tool time_now" if path == "tool" else "hi"
    async with open_gateway_client(url, TOKEN) as client:
        for i in range(20):  # warm-up
            await one_turn(client, "agent:main:warm", message, f"warm-{path}-{i}")
        latencies: list[float] = []
        for i in range(turns):
            before = provider.model_s if provider is not None else 0.0
            started = time.perf_counter()
            await one_turn(client, "agent:main:bench", message, f"{path}-{i}")
            total = time.perf_counter() - started
            model = (provider.model_s - before) if provider is not None else 0.0
            latencies.append((total - model) * 1000)
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        async with open_gateway_client(url, TOKEN) as client:
            for i in range(turns // concurrency):
                await one_turn(client, f"agent:main:w{n}", message, f"{path}-w{n}-{i}")
                done += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for n in range(concurrency):
            nursery.start_soon(worker, n)
    elapsed = time.perf_counter() - started
    print(
        f"{path:>5} path: turn overhead p50 {statistics.median(latencies):.2f} ms, "
        f"p99 {pct(latencies, 0.99):.2f} ms, mean {statistics.fmean(latencies):.2f} ms ({turns} turns); "
        f"{done / elapsed:.0f} messages/s with {concurrency} concurrent sessions"
    )


async def main(args: argparse.Namespace) -> None:
    configure(level="warning", human=False)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "bench.db")
        settings = Settings(
            gateway=GatewaySettings(port=0, token=TOKEN, rate_limit_per_s=100_000, rate_limit_burst=100_000)
        )
        state = GatewayState(settings=settings, db=db)
        async with trio.open_nursery() as nursery:
            provider: Any
            if args.http_model:
                fake = FakeModelServer(default=ModelReply(text="Hello, world"))
                await nursery.start(fake.serve)
                provider = TimedProvider(OpenAIProvider(fake.base_url, models=("m1",)))
            else:
                provider = InstantModel()
            runtime = AgentRuntime.from_settings(settings, db, wall_ms=state.wall_ms, provider=provider)
            if args.queue:
                gate = QueueTurnGate()
                queue_cm = open_run_queue(gate.runner, MemoryJournal(), **queue_options(settings.queue))
                gate.queue = await queue_cm.__aenter__()
                runtime.gate = gate
            runtime.start(nursery)
            attach_runtime(state, runtime)
            port = await nursery.start(serve_gateway, state, build_method_table())
            url = f"ws://127.0.0.1:{port}"
            gate_name = "run queue" if args.queue else "local gate"
            print(
                f"bench_agent: {args.turns} turns per path, WebSocket -> gateway -> agent ({gate_name}) -> "
                "store -> events"
            )
            await measure(url, None, "tool", args.turns, args.concurrency)
            await measure(url, provider, "model", args.turns, args.concurrency)
            await runtime.aclose()
            if args.queue:
                await queue_cm.__aexit__(None, None, None)
            nursery.cancel_scope.cancel()
        db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--http-model", action="store_true", help="use the loopback HTTP model server")
    parser.add_argument(
        "--no-queue",
        dest="queue",
        action="store_false",
        help="gate turns with LocalTurnGate, not the run queue",
    )
    trio.run(main, parser.parse_args())
