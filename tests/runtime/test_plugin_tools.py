"""Tools plugins run for real by a real ``appliance serve`` on loopback (no channel enabled): a
``/tool plugin_kit__echo {...}`` sent with ``chat.send`` gets the plugin's answer, a model's tool call
reaches the plugin and its result comes back wrapped as untrusted, a killed plugin is a clear tool error
(and its tools are no longer offered) until it is restarted and listed again, and a plugin crashing in
the middle of a call fails that call only: the turn ends cleanly and the gateway keeps serving."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from appliance.gateway.client import GatewayClient, open_gateway_client
from appliance.testing.openai_server import FakeModelServer, ModelReply
from appliance.testing.process import ServeProcess, start_serve

SAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "sample_plugin.py"
BUILTINS = ["exec", "model_info", "session_tail", "time_now"]


def install_tools_plugin(data_dir: Path, name: str = "kit") -> Path:
    """A tools plugin dir ``<data_dir>/plugins/<name>`` running the sample plugin's tools on a spool
    (pids, hold file); returns the spool dir."""
    directory = data_dir / "plugins" / name
    spool = directory / "spool"
    spool.mkdir(parents=True)
    run = directory / "run"
    run.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{SAMPLE}" --mode tools --spool "{spool}"\n')
    run.chmod(0o755)
    (directory / "plugin.toml").write_text(
        'description = "sample tools"\nkind = "tools"\ncommand = ["./run"]\n'
    )
    return spool


def tools_env(model: FakeModelServer | None = None) -> dict[str, str]:
    env = {
        "APPLIANCE_PLUGINS_ENABLED": "kit",
        "APPLIANCE_PLUGINS_RESTART_BASE_S": "0.05",
        "APPLIANCE_PLUGINS_RESTART_CAP_S": "0.2",
    }
    if model is not None:
        env |= {"APPLIANCE_AGENT_PROVIDER_BASE_URL": model.base_url, "APPLIANCE_AGENT_MODEL": "fake-model"}
    return env


def pids(spool: Path) -> list[int]:
    try:
        return [int(p) for p in (spool / "pids").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@asynccontextmanager
async def serving(data_dir: Path, env: dict[str, str]) -> AsyncIterator[ServeProcess]:
    serve = await trio.to_thread.run_sync(lambda: start_serve(data_dir, env=env))
    try:
        yield serve
    except BaseException:
        serve.kill()  # a failed test must not leave a gateway behind
        raise
    with trio.CancelScope(shield=True):
        rc = await trio.to_thread.run_sync(serve.terminate)
    assert rc == 0, serve.log_text()[-4000:]
    assert "Traceback" not in serve.log_text()


class Chat:
    """One operator connection; :meth:`ask` sends a message and waits for its turn to end."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self.count = 0

    async def ask(self, text: str) -> tuple[str, str]:
        """``("ok", reply)`` or ``("error", error)``."""
        self.count += 1
        run_id = f"run-{self.count}"
        params = {"sessionKey": "agent:main:main", "message": text, "idempotencyKey": run_id}
        assert (await self.client.call("chat.send", params))["runId"] == run_id
        waited = await self.client.call("agent.wait", {"runId": run_id, "timeoutMs": 30_000})
        if waited["status"] != "ok":
            assert waited["status"] == "error", waited
            return "error", str(waited["error"])
        hist = await self.client.call("chat.history", {"sessionKey": "agent:main:main"})
        last = hist["messages"][-1]
        assert last["role"] == "assistant"
        return "ok", str(last["content"][0]["text"])

    async def plugins(self) -> dict[str, Any]:
        plugins = (await self.client.call("health"))["plugins"]
        assert isinstance(plugins, dict)
        return plugins

    async def wait_plugins(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        while not predicate(await self.plugins()):  # noqa: ASYNC110 -- polls the gateway
            await trio.sleep(0.02)


@asynccontextmanager
async def chat(serve: ServeProcess) -> AsyncIterator[Chat]:
    async with open_gateway_client(serve.url, serve.token) as client:
        yield Chat(client)


async def test_tool_path_reaches_the_plugin_and_survives_kill_and_crash(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spool = install_tools_plugin(data)
    with trio.fail_after(90):
        async with serving(data, tools_env()) as serve, chat(serve) as c:
            await c.wait_plugins(lambda p: p["loaded"] == ["kit"])
            assert await c.ask('/tool plugin_kit__echo {"text":"hi"}') == ("ok", "plugin says: hi")
            status, error = await c.ask("/tool plugin_kit__fail")
            assert (status, error) == (
                "error",
                "tool error: plugin_kit__fail: the fail tool failed, as asked",
            )
            status, error = await c.ask("/tool plugin_kit__nope {}")
            assert status == "error"
            assert error.startswith(
                "tool error: plugin_kit__nope: plugin kit has no tool 'nope' (it has: echo,"
            )
            status, error = await c.ask("/tool plugin_kit__echo [1]")
            assert (status, error) == (
                "error",
                "tool error: plugin_kit__echo: arguments must be a JSON object, not list",
            )
            status, error = await c.ask("/tool plugin_kit__big")
            assert status == "ok"
            assert error.endswith("[output truncated at 65536 bytes]")

            # killed, and kept down: a clear tool error, and the gateway keeps answering
            first = pids(spool)[0]
            (spool / "hold").touch()
            os.kill(first, 9)
            await c.wait_plugins(lambda p: p["loaded"] == [])
            status, error = await c.ask('/tool plugin_kit__echo {"text":"x"}')
            assert status == "error"
            assert error.startswith("tool error: plugin_kit__echo: plugin kit is not running (last error: ")
            assert error.endswith("it is restarted automatically, try again shortly")
            assert (await c.ask("/tool time_now"))[0] == "ok"
            (spool / "hold").unlink()
            await c.wait_plugins(lambda p: p["loaded"] == ["kit"])
            assert await c.ask('/tool plugin_kit__echo {"text":"back"}') == ("ok", "plugin says: back")

            # a crash in the middle of a call fails that call; the plugin is restarted and serves again
            started = len(pids(spool))
            status, error = await c.ask("/tool plugin_kit__crash")
            assert (status, error) == ("error", "tool error: plugin_kit__crash: plugin kit exited")
            await c.wait_plugins(lambda p: len(pids(spool)) > started and p["loaded"] == ["kit"])
            assert await c.ask('/tool plugin_kit__echo {"text":"again"}') == ("ok", "plugin says: again")
        running = pids(spool)
    assert len(running) >= 3
    assert [p for p in running if alive(p)] == []
    log = serve.log_text()
    assert log.count('"plugin_tools_listed"') >= 3  # once per plugin process that was used
    assert '"plugin_tool_skipped"' in log  # the sample's "Bad Name" entry
    assert '"plugin_tool_called"' in log


async def test_model_tool_calls_reach_the_plugin_and_follow_the_fleet(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spool = install_tools_plugin(data)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            model = FakeModelServer()
            await nursery.start(model.serve)
            async with serving(data, tools_env(model)) as serve, chat(serve) as c:
                await c.wait_plugins(lambda p: p["loaded"] == ["kit"])
                model.script.extend(
                    [
                        ModelReply(text="", tool_calls=(("plugin_kit__echo", '{"text": "from model"}'),)),
                        ModelReply(text="the plugin answered"),
                    ]
                )
                assert await c.ask("ask the plugin") == ("ok", "the plugin answered")
                offered = [t["function"]["name"] for t in model.requests[0]["tools"]]
                assert offered == [
                    *BUILTINS,
                    *(
                        f"plugin_kit__{t}"
                        for t in ("echo", "parts", "fail", "sleep", "crash", "big", "inject")
                    ),
                ]
                echo = model.requests[0]["tools"][4]["function"]
                assert echo["description"] == "[plugin kit] Echo the text back."
                assert echo["parameters"]["required"] == ["text"]
                (result,) = [m["content"] for m in model.requests[1]["messages"] if m["role"] == "tool"]
                assert result.startswith("<<<EXTERNAL_UNTRUSTED_CONTENT")
                assert "Source: tool plugin_kit__echo" in result
                assert "plugin says: from model" in result

                # the model calls a tool that crashes the plugin: a tool result, the turn still ends ok
                model.script.extend(
                    [
                        ModelReply(text="", tool_calls=(("plugin_kit__crash", "{}"),)),
                        ModelReply(text="it broke"),
                    ]
                )
                started = len(pids(spool))
                assert await c.ask("crash it") == ("ok", "it broke")
                (result,) = [m["content"] for m in model.requests[3]["messages"] if m["role"] == "tool"]
                assert "tool error: plugin_kit__crash: plugin kit exited" in result

                await c.wait_plugins(lambda p: len(pids(spool)) > started and p["loaded"] == ["kit"])

                # killed and kept down: its tools are not offered, a call anyway is a tool error
                (spool / "hold").touch()
                os.kill(pids(spool)[-1], 9)
                await c.wait_plugins(lambda p: p["loaded"] == [])
                model.script.extend(
                    [ModelReply(text="", tool_calls=(("plugin_kit__echo", "{}"),)), ModelReply(text="down")]
                )
                assert await c.ask("try again") == ("ok", "down")
                assert [t["function"]["name"] for t in model.requests[4]["tools"]] == BUILTINS
                (result,) = [m["content"] for m in model.requests[5]["messages"] if m["role"] == "tool"]
                assert "plugin kit is not running" in result

                # back: listed again (a new process), offered again
                (spool / "hold").unlink()
                await c.wait_plugins(lambda p: p["loaded"] == ["kit"])
                assert await c.ask("hello") == ("ok", "echo: hello")
                assert len(model.requests[6]["tools"]) == len(offered)
            nursery.cancel_scope.cancel()
    log = serve.log_text()
    assert log.count('"plugin_tools_listed"') >= 2
