from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import auto_concurrency, load_settings
from appliance.errors import ConfigError, ExitCode


def test_embedded_defaults_follow_the_port_plan() -> None:
    settings, sources = load_settings(environ={})
    assert sources.profile == "embedded"
    assert settings.gateway.bind == "loopback"
    assert settings.gateway.port == 18789
    assert settings.gateway.auth == "token"
    assert settings.sandbox.timeout_s <= 600  # minutes, not half-hours
    assert settings.agent.turn_timeout_s <= 600
    assert settings.queue.mailbox_capacity > 0
    assert settings.sandbox.output_cap_bytes <= 1 << 20
    assert settings.queue.effective_concurrency() == auto_concurrency()


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 2), (4, 2), (64, 2)])
def test_auto_concurrency(cores: int, expected: int) -> None:
    assert auto_concurrency(cores) == expected


def test_dev_profile_layers_over_embedded() -> None:
    settings, sources = load_settings(profile="dev", environ={})
    assert settings.gateway.port == 19001
    assert settings.gateway.bind == "loopback"  # inherited
    assert sources.files == ("profiles/embedded.toml", "profiles/dev.toml")


def test_env_vars_override_profile_and_operator_file(tmp_path: Path) -> None:
    operator = tmp_path / "op.toml"
    operator.write_text('[gateway]\nport = 2000\nbind = "127.0.0.1"\n')
    env = {
        "APPLIANCE_CONFIG": str(operator),
        "APPLIANCE_GATEWAY_PORT": "3000",
        "APPLIANCE_DATA_DIR": str(tmp_path / "d"),
        "APPLIANCE_GATEWAY_TOKEN": "tok",
    }
    settings, sources = load_settings(environ=env)
    assert settings.gateway.port == 3000
    assert settings.gateway.bind == "127.0.0.1"
    assert settings.gateway.token == "tok"
    assert settings.data_dir == str(tmp_path / "d")
    assert str(operator) in sources.files


def test_command_line_wins_over_env(tmp_path: Path) -> None:
    settings, _ = load_settings(
        environ={"APPLIANCE_GATEWAY_PORT": "3000"}, overrides={"gateway": {"port": 4000}}
    )
    assert settings.gateway.port == 4000


def test_profile_from_env(tmp_path: Path) -> None:
    settings, sources = load_settings(environ={"APPLIANCE_PROFILE": "dev"})
    assert sources.profile == "dev"
    assert settings.gateway.port == 19001


def test_operator_file_found_in_data_dir(tmp_path: Path) -> None:
    (tmp_path / "appliance.toml").write_text("[queue]\nmailbox_capacity = 7\n")
    settings, _ = load_settings(environ={"APPLIANCE_DATA_DIR": str(tmp_path)})
    assert settings.queue.mailbox_capacity == 7


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[gateway\nport = 1", "invalid TOML"),
        ("[gateway]\nprot = 1\n", "gateway.prot: unknown key"),
        ('[gateway]\nport = "x"\n', "gateway.port: expected an integer in 0..65535, got 'x'"),
        ("[gateway]\nport = 70000\n", "gateway.port: expected an integer in 0..65535, got 70000"),
        ("[gateway]\nport = true\n", "gateway.port: expected an integer"),
        (
            '[queue]\ndefault_mode = "lifo"\n',
            "queue.default_mode: expected one of 'followup', 'steer', 'collect'",
        ),
        ("gateway = 3\n", "gateway: expected a table"),
        ("nonsense = 1\n", "nonsense: unknown key"),
    ],
)
def test_bad_operator_file_names_file_key_and_expectation(tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=str(bad), environ={})
    message = info.value.one_line()
    assert str(bad) in message
    assert needle in message
    assert "\n" not in message
    assert info.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"APPLIANCE_GATEWAY_PORT": "abc"},
            "environment APPLIANCE_GATEWAY_PORT: gateway.port: expected an integer",
        ),
        ({"APPLIANCE_GATEWAY_NOPE": "1"}, "gateway.nope: unknown key"),
        ({"APPLIANCE_SCHEDULER_ENABLED": "maybe"}, "scheduler.enabled: expected true or false"),
        ({"APPLIANCE_PROFILE": "nope"}, "unknown profile 'nope'"),
        ({"APPLIANCE_CONFIG": "/nonexistent/x.toml"}, "/nonexistent/x.toml: file not found"),
    ],
)
def test_bad_env_is_one_line(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert needle in info.value.one_line()


def test_env_bool_and_float_coercion() -> None:
    settings, _ = load_settings(
        environ={"APPLIANCE_SCHEDULER_ENABLED": "off", "APPLIANCE_GATEWAY_RATE_LIMIT_PER_S": "2.5"}
    )
    assert settings.scheduler.enabled is False
    assert settings.gateway.rate_limit_per_s == 2.5


def test_nested_channel_tables_from_toml_and_env(tmp_path: Path) -> None:
    operator = tmp_path / "op.toml"
    operator.write_text('[channels.telegram]\nenabled = true\nallow_user_ids = [12345, "678"]\n')
    settings, _ = load_settings(
        config_file=str(operator),
        environ={
            "APPLIANCE_CHANNELS_TELEGRAM_BOT_TOKEN": "tok",
            "APPLIANCE_CHANNELS_WHATSAPP_ALLOW_CHAT_IDS": "a@g.us, b@g.us",
        },
    )
    assert settings.channels.telegram.enabled is True
    assert settings.channels.telegram.allow_user_ids == ("12345", "678")
    assert settings.channels.telegram.bot_token == "tok"
    assert settings.channels.whatsapp.allow_chat_ids == ("a@g.us", "b@g.us")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[channels.telegram]\nbogus = 1\n", "channels.telegram.bogus: unknown key"),
        (
            '[channels.telegram]\nallow_user_ids = "1"\n',
            "channels.telegram.allow_user_ids: expected a list of strings",
        ),
        ("[channels]\ntelegram = 1\n", "channels.telegram: expected a table"),
    ],
)
def test_bad_nested_values_name_the_dotted_key(tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(config_file=str(bad), environ={})


def test_unknown_nested_env_key_lists_the_table_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"APPLIANCE_CHANNELS_TELEGRAM_NOPE": "1"})
    assert "channels.telegram.nope: unknown key" in info.value.one_line()
    assert "bot_token" in info.value.one_line()
