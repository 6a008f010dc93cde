from __future__ import annotations

import os
import stat
from pathlib import Path

import attrs

from appliance.config import load_settings
from appliance.runtime import (
    DataPaths,
    ensure_data_dir,
    ensure_gateway_token,
    read_run_state,
    remove_run_state,
    write_run_state,
)


def _settings(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    settings, _ = load_settings(environ={"APPLIANCE_DATA_DIR": str(tmp_path / "data"), **env})
    return settings


def test_first_start_generates_private_token_then_reuses_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    paths = DataPaths.of(settings)
    ensure_data_dir(paths)
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    first = ensure_gateway_token(settings, paths)
    assert first is not None
    assert first.origin == "generated"
    assert first.path == paths.token_file
    assert stat.S_IMODE(paths.token_file.stat().st_mode) == 0o600
    assert len(first.token) >= 32
    second = ensure_gateway_token(settings, paths)
    assert second is not None
    assert second.origin == "file"
    assert second.token == first.token


def test_configured_token_wins_and_auth_none_has_none(tmp_path: Path) -> None:
    settings = _settings(tmp_path, APPLIANCE_GATEWAY_TOKEN="configured")
    paths = DataPaths.of(settings)
    ensure_data_dir(paths)
    source = ensure_gateway_token(settings, paths)
    assert source is not None
    assert source.token == "configured"
    assert not paths.token_file.exists()
    off = attrs.evolve(settings, gateway=attrs.evolve(settings.gateway, auth="none"))
    assert ensure_gateway_token(off, paths) is None


def test_run_state_round_trip_and_stale_pid(tmp_path: Path) -> None:
    paths = DataPaths.of(_settings(tmp_path))
    ensure_data_dir(paths)
    write_run_state(paths, {"pid": os.getpid(), "port": 1})
    assert read_run_state(paths) == {"pid": os.getpid(), "port": 1}
    write_run_state(paths, {"pid": 2**22 + 12345, "port": 1})
    assert read_run_state(paths) is None
    remove_run_state(paths)
    remove_run_state(paths)
    assert read_run_state(paths) is None
