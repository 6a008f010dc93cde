"""The enabled plugins of an appliance: loading and checking installs, the plugin's environment, doctor
rows, health/status views, and the stop path (stderr to the log, SIGTERM then SIGKILL, the whole group)."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from appliance import log as applog
from appliance.config.settings import PluginsSettings, Settings
from appliance.plugins import (
    PluginFleet,
    PluginManifestError,
    PluginSpec,
    doctor_rows,
    load_definitions,
    open_plugin,
    plugins_health,
    plugins_status,
    python_plugin_argv,
    register_fleet,
)
from appliance.plugins.fleet import plugin_environment, plugins_dir

SAMPLE = str(Path(__file__).with_name("sample_plugin.py"))
BASE = ["sample.crash", "sample.echo", "sample.flood", "sample.sleep", "webhook.post"]


def settings_for(tmp_path: Path, *enabled: str, **plugins: Any) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), plugins=PluginsSettings(enabled=enabled, **plugins))


def install(
    tmp_path: Path, name: str, manifest: str, *, mode: str = "normal", executable: bool = True
) -> Path:
    directory = tmp_path / "data" / "plugins" / name
    directory.mkdir(parents=True)
    run = directory / "run"
    run.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{SAMPLE}" --mode {mode} "$@"\n')
    run.chmod(0o755 if executable else 0o644)
    (directory / "plugin.toml").write_text(manifest)
    return directory


TOOLS = f'description = "sample"\nkind = "tools"\ncommand = ["./run"]\ncapabilities = {json.dumps(BASE)}\n'


@pytest.fixture
def log_sink() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    applog.configure(level="debug", stream=sink, human=False)
    try:
        yield sink
    finally:
        applog.configure()


def events(sink: io.StringIO, name: str) -> list[dict[str, Any]]:
    out = []
    for line in sink.getvalue().splitlines():
        record = json.loads(line)
        if record.get("event") == name:
            out.append(record)
    return out


# -- loading -------------------------------------------------------------------------------------------


def test_plugins_dir_defaults_under_the_data_dir(tmp_path: Path) -> None:
    assert plugins_dir(settings_for(tmp_path)) == tmp_path / "data" / "plugins"
    custom = settings_for(tmp_path, dir=str(tmp_path / "elsewhere"))
    assert plugins_dir(custom) == tmp_path / "elsewhere"


def test_load_definitions_checks_every_enabled_plugin(tmp_path: Path) -> None:
    install(tmp_path, "tools1", TOOLS)
    (d,) = load_definitions(settings_for(tmp_path, "tools1"), {"PATH": "/usr/bin:/bin"})
    assert d.argv == (str(tmp_path / "data" / "plugins" / "tools1" / "run"),)


@pytest.mark.parametrize(
    ("setup", "enabled", "expected"),
    [
        ("none", ("ghost",), "plugins.enabled: plugin 'ghost' is enabled but "),
        ("no-manifest", ("bare",), "plugins.enabled: plugin 'bare' has no plugin.toml in "),
        ("twice", ("tools1", "tools1"), "plugins.enabled: plugin 'tools1' is listed twice"),
        ("not-exec", ("tools1",), "tools1/plugin.toml: command: "),
        (
            "not-on-path",
            ("tools1",),
            "tools1/plugin.toml: command: 'no-such-program-xyz' is not found on PATH",
        ),
        ("bad-name", ("../x",), "plugins.enabled: plugin name '../x' must be"),
    ],
)
def test_load_failures_are_one_line_config_errors(
    tmp_path: Path, setup: str, enabled: tuple[str, ...], expected: str
) -> None:
    if setup == "no-manifest":
        (tmp_path / "data" / "plugins" / "bare").mkdir(parents=True)
    elif setup in ("twice", "not-exec"):
        install(tmp_path, "tools1", TOOLS, executable=setup != "not-exec")
    elif setup == "not-on-path":
        install(tmp_path, "tools1", 'kind = "tools"\ncommand = ["no-such-program-xyz"]\n')
    with pytest.raises(PluginManifestError) as info:
        load_definitions(settings_for(tmp_path, *enabled), {"PATH": "/usr/bin:/bin"})
    assert expected in info.value.one_line()
    assert info.value.exit_code == 78


def test_environment_is_minimal_plus_the_listed_names(tmp_path: Path) -> None:
    install(
        tmp_path, "tools1", TOOLS.replace('kind = "tools"', 'kind = "tools"\nenv = ["TEAM_TOKEN", "UNSET"]')
    )
    (d,) = load_definitions(settings_for(tmp_path, "tools1"), {"PATH": "/bin"})
    environ = {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "TEAM_TOKEN": "t",
        "APPLIANCE_GATEWAY_TOKEN": "secret",
        "HOME": "/root",
    }
    env = plugin_environment(d, environ, state=tmp_path / "state")
    assert env == {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path / "state"),
        "TEAM_TOKEN": "t",
        "APPLIANCE_PLUGIN_NAME": "tools1",
        "APPLIANCE_PLUGIN_DIR": d.directory,
        "APPLIANCE_PLUGIN_STATE_DIR": str(tmp_path / "state"),
    }


# -- doctor --------------------------------------------------------------------------------------------


def test_doctor_rows(tmp_path: Path) -> None:
    assert [attrs.astuple(r)[:2] for r in doctor_rows(settings_for(tmp_path))] == [("plugins", "skip")]
    install(tmp_path, "good", TOOLS)
    install(tmp_path, "envy", TOOLS.replace('kind = "tools"', 'kind = "tools"\nenv = ["TEAM_TOKEN"]'))
    install(tmp_path, "broken", 'kind = "tools"\n')
    rows = doctor_rows(settings_for(tmp_path, "good", "envy", "broken", "ghost"), {"PATH": "/bin"})
    assert [(r.name, r.status) for r in rows] == [
        ("plugin:good", "ok"),
        ("plugin:envy", "warn"),
        ("plugin:broken", "fail"),
        ("plugin:ghost", "fail"),
    ]
    assert rows[0].detail.startswith("tools plugin, runs ")
    assert "TEAM_TOKEN" in rows[1].detail
    assert rows[2].detail.endswith(
        'broken/plugin.toml: command: missing (required), e.g. command = ["./run"]'
    )


# -- running and reporting -----------------------------------------------------------------------------


class FakeState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def test_health_before_the_fleet_starts_lists_enabled_plugins_unavailable(tmp_path: Path) -> None:
    state = FakeState(settings_for(tmp_path, "chat"))
    health = plugins_health(state)
    assert health["loaded"] == health["errors"] == []
    assert health["unavailable"] == [{"id": "chat", "reason": "not started", "error": None, "restarts": 0}]
    assert plugins_status(state) == {"degradedPlugins": ["chat"], "plugins": []}
    assert plugins_health(FakeState(settings_for(tmp_path)))["unavailable"] == []


async def test_fleet_runs_reports_and_disables_a_refused_plugin(tmp_path: Path) -> None:
    install(tmp_path, "good", TOOLS)
    install(tmp_path, "greedy", TOOLS, mode="greedy")  # declares shell.exec: never granted
    settings = settings_for(tmp_path, "good", "greedy", restart_base_s=0.01, restart_cap_s=0.05)
    state = FakeState(settings)
    fleet = PluginFleet.from_settings(settings)
    register_fleet(state, fleet)

    def ready(health: dict[str, Any]) -> bool:
        return health["loaded"] == ["good"] and bool(health["errors"])

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for name in fleet.definitions:
                nursery.start_soon(fleet.run_plugin, name)
            while not ready(plugins_health(state)):  # noqa: ASYNC110 -- supervisor state, no event
                await trio.sleep(0.01)
            health = plugins_health(state)
            assert health["errors"] == [
                {
                    "id": "greedy",
                    "error": "plugin sample-webhook declares capabilities it was not granted: shell.exec",
                }
            ]
            assert health["unavailable"] == []
            good = plugins_status(state)["plugins"][0]
            assert (good["id"], good["state"], good["version"]) == ("good", "running", "1.0.0")
            assert await fleet.supervisors["good"].call("sample.echo", {"x": 1}) == {"x": 1}
            assert plugins_status(state)["degradedPlugins"] == ["greedy"]
            assert (tmp_path / "data" / "plugin-state" / "good").stat().st_mode & 0o777 == 0o700
            nursery.cancel_scope.cancel()
    assert plugins_status(state)["plugins"][0]["state"] == "stopped"


async def test_stderr_lines_are_logged_with_the_plugin_name(log_sink: io.StringIO) -> None:
    spec = PluginSpec("forky", python_plugin_argv(SAMPLE, "--mode", "forker"), granted=frozenset(BASE))
    with trio.fail_after(30):
        async with open_plugin(spec) as conn:
            while b"helper pid" not in conn.stderr_tail:  # noqa: ASYNC110 -- a pipe tail, no event
                await trio.sleep(0.01)
            helper = int(conn.stderr_tail.split(b"helper pid ")[1].split()[0])
            assert _state(helper) not in ("gone", "Z")
    lines = events(log_sink, "plugin_stderr")
    assert lines[0]["plugin"] == "forky"
    assert lines[0]["line"] == f"helper pid {helper}"
    # the helper the plugin forked did not outlive it (its group was ended with it)
    with trio.fail_after(10):
        while _state(helper) not in ("gone", "Z"):  # noqa: ASYNC110 -- another process, no event
            await trio.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "gone"


async def test_stop_escalates_to_sigkill_for_a_plugin_that_ignores_everything(log_sink: io.StringIO) -> None:
    spec = PluginSpec(
        "stubborn",
        python_plugin_argv(SAMPLE, "--mode", "stubborn"),
        granted=frozenset(BASE),
        stop_timeout_s=0.2,
    )
    with trio.fail_after(30):
        async with open_plugin(spec) as conn:
            process = conn.process
    assert process.returncode == -9
    assert events(log_sink, "plugin_terminating")
    assert events(log_sink, "plugin_killed")
