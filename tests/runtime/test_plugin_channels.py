"""Plugin channels in ``open_channels`` (in-process, serve's wiring) and run for real by a real
``appliance serve`` on loopback: a message from the plugin is
answered through it (defender -> queue -> agent -> reply), a crash is restarted and shown in ``health``,
redelivery after a restart is not answered twice, shutdown leaves no plugin process, and a broken
install stops ``serve`` with exit 78 and one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from appliance.config.settings import PluginsSettings, Settings
from appliance.gateway.client import open_gateway_client
from appliance.gateway.state import GatewayState
from appliance.runtime.channels import open_channels
from appliance.runtime.services import Services
from appliance.store import get_session, history, open_database
from appliance.testing.openai_server import FakeModelServer
from appliance.testing.process import ServeProcess, free_port, start_serve

SAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "sample_plugin.py"
GRANT = [
    "channel.ack",
    "channel.poll",
    "channel.send",
    "sample.crash",
    "sample.echo",
    "sample.flood",
    "sample.outbox",
    "sample.sleep",
    "webhook.post",
]


def install_plugin(data_dir: Path, name: str = "chat", *, manifest: str | None = None) -> Path:
    """A channel plugin dir ``<data_dir>/plugins/<name>`` whose ``./run`` starts the sample plugin on a
    file spool; returns the spool dir."""
    directory = data_dir / "plugins" / name
    spool = directory / "spool"
    spool.mkdir(parents=True)
    run = directory / "run"
    run.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -u "{SAMPLE}" --mode channel --spool "{spool}" "$@"\n'
    )
    run.chmod(0o755)
    if manifest is None:
        manifest = (
            'description = "sample chat"\nkind = "channel"\ncommand = ["./run"]\n'
            f'capabilities = {json.dumps(GRANT)}\n\n[channel]\nallow_sender_ids = ["U1"]\npoll_timeout_s = 1\n'
        )
    (directory / "plugin.toml").write_text(manifest)
    return spool


def plugin_env(name: str = "chat", model: FakeModelServer | None = None) -> dict[str, str]:
    env = {
        "APPLIANCE_PLUGINS_ENABLED": name,
        "APPLIANCE_PLUGINS_RESTART_BASE_S": "0.05",
        "APPLIANCE_PLUGINS_RESTART_CAP_S": "0.2",
    }
    if model is not None:
        env |= {"APPLIANCE_AGENT_PROVIDER_BASE_URL": model.base_url, "APPLIANCE_AGENT_MODEL": "fake-model"}
    return env


def post(spool: Path, mid: str, text: str, sender: str = "U1") -> None:
    entry = {"chatId": "C1", "senderId": sender, "text": text, "messageId": mid}
    with (spool / "inbox.jsonl").open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


def outbox(spool: Path) -> list[dict[str, Any]]:
    try:
        lines = (spool / "outbox.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def pids(spool: Path) -> list[int]:
    try:
        return [int(p) for p in (spool / "pids").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive: its parent has not reaped it yet
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 -- files written by another process, no event
        await trio.sleep(0.02)


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


async def gateway_call(serve: ServeProcess, method: str) -> dict[str, Any]:
    async with open_gateway_client(serve.url, serve.token) as client:
        payload = await client.call(method)
    assert isinstance(payload, dict)
    return payload


async def health_plugins(serve: ServeProcess) -> dict[str, Any]:
    plugins = (await gateway_call(serve, "health"))["plugins"]
    assert isinstance(plugins, dict)
    return plugins


async def wait_health(serve: ServeProcess, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while not predicate(plugins := await health_plugins(serve)):  # noqa: ASYNC110 -- polls the gateway
        await trio.sleep(0.02)
    return plugins


async def test_plugin_message_is_answered_through_the_plugin_and_shutdown_leaves_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    spool = install_plugin(data)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            model = FakeModelServer()
            await nursery.start(model.serve)
            async with serving(data, plugin_env(model=model)) as serve:
                post(spool, "m1", "hello plugin")
                post(spool, "m2", "not for you", sender="U9")  # not on the allowlist: ignored
                await until(lambda: len(outbox(spool)) >= 1)
                assert outbox(spool)[0] == {"chatId": "C1", "text": "echo: hello plugin"}
                plugins = await health_plugins(serve)
                assert plugins == {"loaded": ["chat"], "errors": [], "unavailable": []}
                status = await gateway_call(serve, "status")
                assert status["degradedPlugins"] == []
                (car,) = status["plugins"]
                assert (car["id"], car["kind"], car["state"]) == ("chat", "channel", "running")
                assert car["pid"] == pids(spool)[0]
                running = pids(spool)
            nursery.cancel_scope.cancel()
    assert len(outbox(spool)) == 1
    assert [p for p in running if alive(p)] == []
    log = serve.log_text()
    assert '"plugin_stderr"' in log
    assert "sample plugin started pid" in log
    # the turn ran on the plugin's own session key
    assert "agent:main:plugin-chat:direct:c1" in log


async def test_crashed_plugin_is_restarted_shown_in_health_and_redelivery_is_answered_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    spool = install_plugin(data)
    with trio.fail_after(60):
        async with serving(data, plugin_env()) as serve:
            post(spool, "m1", "/tool time_now")
            await until(lambda: len(outbox(spool)) >= 1)
            first = pids(spool)[0]
            (spool / "hold").touch()  # restarted copies exit at once until the hold is lifted
            os.kill(first, 9)  # the crash
            plugins = await wait_health(
                serve, lambda p: bool(p["unavailable"]) and p["unavailable"][0]["restarts"] >= 2
            )
            assert plugins["loaded"] == plugins["errors"] == []
            (down,) = plugins["unavailable"]
            assert (down["id"], down["reason"]) == ("chat", "restarting")
            assert "exited" in down["error"]
            assert (await gateway_call(serve, "status"))["degradedPlugins"] == ["chat"]
            (spool / "hold").unlink()
            await wait_health(serve, lambda p: p["loaded"] == ["chat"])
            (car,) = (await gateway_call(serve, "status"))["plugins"]
            assert car["restarts"] >= 2
            assert car["pid"] == pids(spool)[-1] != first
            # the restarted plugin forgot its acks and offers m1 again: the outbox says it was answered
            post(spool, "m2", "/tool time_now")
            await until(lambda: len(outbox(spool)) >= 2)
        # m1 came again before m2 (file order) and was acknowledged without a second answer
        assert len(outbox(spool)) == 2, outbox(spool)
        assert [p for p in pids(spool) if alive(p)] == []
        log = serve.log_text()
        assert '"plugin_crashed"' in log
        assert "sample plugin held: exiting" in log


async def test_open_channels_runs_a_plugin_channel_through_the_bridge(tmp_path: Path) -> None:
    """serve's wiring in-process: the plugin's message runs a turn on ``plugin-chat`` session keys and the
    reply goes back through the plugin; the router sends ``plugin:chat:`` chat ids to it."""
    data = tmp_path / "data"
    spool = install_plugin(data)
    settings = Settings(
        data_dir=str(data),
        plugins=PluginsSettings(enabled=("chat",), restart_base_s=0.01, restart_cap_s=0.05),
    )
    db = open_database(tmp_path / "a.db")
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                state = GatewayState(settings=settings, db=db)
                state.services = Services(state, nursery)
                opened = open_channels(state, nursery)
                assert sorted(opened.adapters) == ["plugin:chat"]
                assert opened.plugins is not None
                post(spool, "m1", "/tool time_now")
                await until(lambda: len(outbox(spool)) >= 1)
                assert "epoch ms" in outbox(spool)[0]["text"]
                assert opened.router.owns("plugin:chat:C7")
                await opened.router.send("plugin:chat:C7", "proactive")
                assert outbox(spool)[-1] == {"chatId": "C7", "text": "proactive"}
                nursery.cancel_scope.cancel()
        key = "agent:main:plugin-chat:direct:c1"
        record = get_session(db, key)
        assert record is not None
        assert [m.role for m in history(db, key, record.session_id)][:2] == ["user", "assistant"]
        assert [p for p in pids(spool) if alive(p)] == []
    finally:
        db.close()


def run_serve_expecting_failure(data: Path, env: dict[str, str]) -> tuple[int, str]:
    serve = start_serve(data, port=free_port(), env=env, wait=False)
    try:
        rc = serve.proc.wait(30)
    except subprocess.TimeoutExpired:
        serve.kill()
        raise
    return rc, serve.log_text()


def last_line(log: str) -> str:
    return log.strip().splitlines()[-1]


async def test_bad_manifest_stops_serve_with_exit_78_and_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    install_plugin(data, manifest='kind = "channel"\ncomand = ["./run"]\n')
    rc, log = await trio.to_thread.run_sync(run_serve_expecting_failure, data, plugin_env())
    assert rc == 78, log
    line = last_line(log)
    assert line.startswith("appliance: ")
    assert "chat/plugin.toml: comand: unknown key" in line
    assert "Traceback" not in log


async def test_missing_plugin_dir_stops_serve_with_exit_78_and_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rc, log = await trio.to_thread.run_sync(run_serve_expecting_failure, data, plugin_env("ghost"))
    assert rc == 78, log
    line = last_line(log)
    assert line.startswith("appliance: plugins.enabled: plugin 'ghost' is enabled but ")
    assert "Traceback" not in log


async def test_command_not_executable_stops_serve_with_exit_78(tmp_path: Path) -> None:
    data = tmp_path / "data"
    install_plugin(data)
    (data / "plugins" / "chat" / "run").chmod(0o644)
    rc, log = await trio.to_thread.run_sync(run_serve_expecting_failure, data, plugin_env())
    assert rc == 78, log
    assert "chat/plugin.toml: command: " in last_line(log)
    assert "is not executable" in last_line(log)
