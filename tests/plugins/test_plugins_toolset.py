"""The agent's view of the running tools plugins (:class:`PluginToolset`) over a real fleet of sample
plugins: listing once per process, calls, errors as exceptions the agent can show, a plugin that is down
or dies mid-call, a timeout, and a restarted plugin listed again."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from appliance.config.settings import PluginsSettings, Settings
from appliance.errors import ApplianceError
from appliance.plugins import (
    PluginCrashed,
    PluginFleet,
    PluginTimeout,
    PluginToolResult,
    PluginToolset,
    PluginToolUnknown,
    SupervisorState,
)

SAMPLE = str(Path(__file__).with_name("sample_plugin.py"))
BASE = ["sample.crash", "sample.echo", "sample.flood", "sample.sleep", "webhook.post"]
TOOLS = ["echo", "parts", "fail", "sleep", "crash", "big", "inject"]


def install(tmp_path: Path, name: str, *, mode: str = "tools", manifest: str | None = None) -> Path:
    """``<data>/plugins/<name>`` running the sample plugin on a spool (pids, hold file); returns the spool."""
    directory = tmp_path / "data" / "plugins" / name
    spool = directory / "spool"
    spool.mkdir(parents=True)
    run = directory / "run"
    run.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{SAMPLE}" --mode {mode} --spool "{spool}"\n')
    run.chmod(0o755)
    if manifest is None:
        manifest = 'description = "sample tools"\nkind = "tools"\ncommand = ["./run"]\n'
    (directory / "plugin.toml").write_text(manifest)
    return spool


def pids(spool: Path) -> list[int]:
    try:
        return [int(p) for p in (spool / "pids").read_text().split()]
    except FileNotFoundError:
        return []


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 -- supervisor state and files, no event
        await trio.sleep(0.01)


@asynccontextmanager
async def running(
    tmp_path: Path, *names: str, call_timeout_s: float = 10.0
) -> AsyncIterator[tuple[PluginFleet, PluginToolset]]:
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        plugins=PluginsSettings(
            enabled=names, restart_base_s=0.05, restart_cap_s=0.1, call_timeout_s=call_timeout_s
        ),
    )
    fleet = PluginFleet.from_settings(settings)
    toolset = PluginToolset(lambda: fleet, call_timeout_s=call_timeout_s)
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(fleet.run_plugin, name)
        settled = (SupervisorState.RUNNING, SupervisorState.FAILED)
        await until(lambda: all(fleet.supervisors[n].state in settled for n in names))
        assert fleet.errors == {}
        yield fleet, toolset
        nursery.cancel_scope.cancel()


async def test_tools_are_listed_called_and_fail_clearly(tmp_path: Path) -> None:
    install(tmp_path, "kit")
    with trio.fail_after(30):
        async with running(tmp_path, "kit") as (_fleet, toolset):
            tools = await toolset.list_tools()
            assert [t.name for t in tools] == TOOLS  # "Bad Name" was skipped
            assert {t.plugin for t in tools} == {"kit"}
            echo = tools[0]
            assert echo.description == "Echo the text back."
            assert echo.parameters["required"] == ["text"]
            assert await toolset.call_tool("kit", "echo", {"text": "hi"}) == PluginToolResult(
                "plugin says: hi"
            )
            parts = await toolset.call_tool("kit", "parts", {})
            assert parts.content == "one\n[image content omitted]\ntwo"
            failed = await toolset.call_tool("kit", "fail", {})
            assert failed == PluginToolResult("the fail tool failed, as asked", is_error=True)
            assert len((await toolset.call_tool("kit", "big", {})).content) == 200_000
            with pytest.raises(PluginToolUnknown, match=r"plugin kit has no tool 'nope' \(it has: echo, "):
                await toolset.call_tool("kit", "nope", {})
            with pytest.raises(PluginToolUnknown, match="no tools plugin named 'ghost' is enabled"):
                await toolset.call_tool("ghost", "echo", {})


async def test_listing_is_taken_once_per_process_and_follows_restarts(tmp_path: Path) -> None:
    spool = install(tmp_path, "kit")
    with trio.fail_after(60):
        async with running(tmp_path, "kit") as (fleet, toolset):
            sup = fleet.supervisors["kit"]
            assert len(await toolset.list_tools()) == len(TOOLS)
            first = pids(spool)[0]
            # a crash during a call: an error for that call, never a hang
            with pytest.raises(PluginCrashed, match="plugin kit exited"):
                await toolset.call_tool("kit", "crash", {})
            (spool / "hold").touch()  # restarts exit at once until the hold is lifted
            await until(lambda: sup.state is not SupervisorState.RUNNING)
            assert await toolset.list_tools() == []  # a plugin that is down offers nothing
            with pytest.raises(PluginCrashed, match=r"plugin kit is not running .*try again shortly"):
                await toolset.call_tool("kit", "echo", {"text": "x"})
            (spool / "hold").unlink()
            await until(lambda: sup.state is SupervisorState.RUNNING)
            assert len(await toolset.list_tools()) == len(TOOLS)
            assert sup.pid != first
            assert (await toolset.call_tool("kit", "echo", {"text": "back"})).content == "plugin says: back"


async def test_a_slow_tool_times_out_and_the_plugin_keeps_serving(tmp_path: Path) -> None:
    install(tmp_path, "kit")
    with trio.fail_after(30):
        async with running(tmp_path, "kit", call_timeout_s=1.0) as (_fleet, toolset):
            await toolset.list_tools()
            with pytest.raises(PluginTimeout, match=r"did not answer tools\.call within 1\.0s"):
                await toolset.call_tool("kit", "sleep", {"seconds": 1.5})
            # the late answer is dropped; the next call is answered
            with trio.fail_after(5):
                while True:
                    try:
                        result = await toolset.call_tool("kit", "echo", {"text": "after"})
                        break
                    except PluginTimeout:
                        continue
            assert result.content == "plugin says: after"


async def test_channel_plugins_and_ungranted_plugins_offer_no_tools(tmp_path: Path) -> None:
    install(
        tmp_path,
        "chat",
        mode="channel",
        manifest='kind = "channel"\ncommand = ["./run"]\ncapabilities = '
        + json.dumps(["channel.ack", "channel.poll", "channel.send", "sample.outbox", *BASE])
        + "\n",
    )
    install(  # a tools plugin whose grant lacks tools.list
        tmp_path,
        "mute",
        mode="normal",
        manifest=f'kind = "tools"\ncommand = ["./run"]\ncapabilities = {json.dumps(BASE)}\n',
    )
    with trio.fail_after(30):
        async with running(tmp_path, "chat", "mute") as (_fleet, toolset):
            assert await toolset.list_tools() == []
            with pytest.raises(PluginToolUnknown, match="no tools plugin named 'chat'"):
                await toolset.call_tool("chat", "echo", {})
            with pytest.raises(ApplianceError, match="plugin mute has no tool 'echo' \\(it has: none\\)"):
                await toolset.call_tool("mute", "echo", {})


async def test_no_fleet_means_no_tools() -> None:
    toolset = PluginToolset(lambda: None, call_timeout_s=1.0)
    assert await toolset.list_tools() == []
    with pytest.raises(PluginToolUnknown):
        await toolset.call_tool("kit", "echo", {})
