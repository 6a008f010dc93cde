"""``plugin.toml`` parsing (sans-IO): defaults, the operator's grant, and one-line errors naming file and key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.errors import ConfigError, ExitCode
from appliance.plugins import CHANNEL_METHODS, ChannelOptions, PluginKind, PluginManifestError, parse_manifest
from appliance.plugins.manifest import check_plugin_name, resolve_argv0

SRC = "/p/chat/plugin.toml"


def parse(text: str, name: str = "chat") -> object:
    return parse_manifest(text, name=name, directory="/p/chat", source=SRC)


def error(text: str, name: str = "chat") -> str:
    with pytest.raises(PluginManifestError) as info:
        parse(text, name)
    assert isinstance(info.value, ConfigError)
    assert info.value.exit_code == ExitCode.CONFIG
    line = info.value.one_line()
    assert "\n" not in line
    return line


def test_channel_defaults_and_relative_command() -> None:
    d = parse_manifest(
        'kind = "channel"\ncommand = ["./run", "--fast"]\n', name="chat", directory="/p/chat", source=SRC
    )
    assert d.kind is PluginKind.CHANNEL
    assert d.capabilities == frozenset(CHANNEL_METHODS)
    assert d.channel == ChannelOptions()
    assert d.argv == ("/p/chat/run", "--fast")
    assert d.env == ()
    assert d.description == ""


def test_full_manifest() -> None:
    d = parse_manifest(
        """
description = "team chat"
kind = "channel"
command = ["bin/bridge"]
env = ["TEAM_TOKEN", "HOME"]
capabilities = ["channel.poll", "channel.ack", "channel.send", "team.typing"]

[channel]
allow_sender_ids = ["U1", 42]
allow_chat_ids = [-100]
allow_all = false
require_mention_in_groups = false
max_message_chars = 2000
poll_timeout_s = 5
""",
        name="team",
        directory="/p/team",
        source=SRC,
    )
    assert d.argv == ("/p/team/bin/bridge",)
    assert d.env == ("TEAM_TOKEN", "HOME")
    assert "team.typing" in d.capabilities
    assert d.channel == ChannelOptions(("U1", "42"), ("-100",), False, False, 2000, 5.0)


def test_tools_plugin_has_no_channel_and_bare_commands_stay_for_path_lookup() -> None:
    d = parse_manifest(
        'kind = "tools"\ncommand = ["python3", "-m", "x"]\ncapabilities = ["x.run"]\n',
        name="x",
        directory="/p/x",
        source=SRC,
    )
    assert d.channel is None
    assert d.argv == ("python3", "-m", "x")
    assert d.capabilities == frozenset({"x.run"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('kind = "channel"\ncomand = ["./run"]\n', f"{SRC}: comand: unknown key (known keys: description,"),
        ('command = ["./run"]\n', f"{SRC}: kind: missing (required)"),
        ('kind = "bot"\ncommand = ["./run"]\n', f"{SRC}: kind: 'bot' is not one of: channel, tools"),
        ('kind = "tools"\ncommand = []\n', f"{SRC}: command: expected a non-empty list"),
        ('kind = "tools"\ncommand = "./run"\n', f"{SRC}: command: expected a list of strings"),
        ('kind = "tools"\ncommand = ["./run"]\nenv = ["A-B"]\n', f"{SRC}: env: 'A-B' is not an environment"),
        (
            'kind = "channel"\ncommand = ["./run"]\ncapabilities = ["channel.poll"]\n',
            f"{SRC}: capabilities: a channel plugin needs channel.ack, channel.send",
        ),
        (
            'kind = "tools"\ncommand = ["./run"]\ncapabilities = ["Shell Exec"]\n',
            f"{SRC}: capabilities: 'Shell Exec' is not a dotted",
        ),
        (
            'kind = "tools"\ncommand = ["./run"]\n[channel]\nallow_all = true\n',
            f'{SRC}: channel: only a plugin of kind = "channel"',
        ),
        (
            'kind = "channel"\ncommand = ["./run"]\n[channel]\nallow_everyone = true\n',
            f"{SRC}: channel.allow_everyone: unknown key",
        ),
        (
            'kind = "channel"\ncommand = ["./run"]\n[channel]\nmax_message_chars = 3\n',
            f"{SRC}: channel.max_message_chars: 3 is out of range [16, 1.04858e+06]",
        ),
        (
            'kind = "channel"\ncommand = ["./run"]\n[channel]\nallow_all = "yes"\n',
            f"{SRC}: channel.allow_all: expected true or false, got str",
        ),
        ('kind = "channel"\ncommand = ["./run"\n', f"{SRC}: not valid TOML: "),
    ],
)
def test_errors_name_file_and_key(text: str, expected: str) -> None:
    assert error(text).startswith(expected)


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "Upper", "x" * 33, ".hidden"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(PluginManifestError) as info:
        check_plugin_name(name)
    assert info.value.one_line().startswith("plugins.enabled: plugin name")


def test_resolve_argv0_stays_under_the_plugin_dir_for_relative_paths() -> None:
    assert resolve_argv0("./run", "/p/a") == "/p/a/run"
    assert resolve_argv0("bin/../run", "/p/a") == "/p/a/run"
    assert resolve_argv0("/usr/bin/env", "/p/a") == "/usr/bin/env"
    assert resolve_argv0("node", "/p/a") == "node"


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_a_manifest_error(text: str) -> None:
    failure: PluginManifestError | None = None
    try:
        parse(text)
    except PluginManifestError as exc:
        failure = exc
    assert failure is None or "\n" not in failure.one_line()
