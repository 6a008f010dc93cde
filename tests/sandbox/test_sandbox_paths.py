"""Host path I/O: resolution before the check, and re-verification (no symlink swap) before the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.sandbox.paths import identity, pin_mounts, resolve_path
from appliance.sandbox.policy import Mount, MountKind, MountRefused


def test_resolve_follows_symlinks_and_dotdot(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    resolved = resolve_path(str(tmp_path / "link" / ".." / "link"))
    assert resolved.real == str(tmp_path / "real")
    assert resolved.exists
    assert resolved.is_dir


def test_resolve_lists_secret_children(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TOKEN=x")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / "code.py").write_text("")
    assert resolve_path(str(tmp_path)).secret_children == ((".env", False), (".ssh", True))


def test_resolve_missing_path(tmp_path: Path) -> None:
    assert not resolve_path(str(tmp_path / "nope")).exists


def _bind(path: Path) -> Mount:
    return Mount(MountKind.BIND, str(path), "/workspace/extra/x", readonly=True)


def test_pin_accepts_unchanged_source(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    with pin_mounts([_bind(tmp_path / "ok")], {str(tmp_path / "ok"): identity(str(tmp_path / "ok"))}):
        pass


def test_pin_refuses_a_source_swapped_for_a_symlink(tmp_path: Path) -> None:
    ok, secret = tmp_path / "ok", tmp_path / "secret"
    ok.mkdir()
    secret.mkdir()
    checked = {str(ok): identity(str(ok))}
    ok.rename(tmp_path / "ok.old")
    ok.symlink_to(secret)
    with pytest.raises(MountRefused, match="symlink"), pin_mounts([_bind(ok)], checked):
        pass


def test_pin_refuses_a_parent_swapped_for_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "p" / "ok").mkdir(parents=True)
    (tmp_path / "evil" / "ok").mkdir(parents=True)
    source = tmp_path / "p" / "ok"
    checked = {str(source): identity(str(source))}
    (tmp_path / "p").rename(tmp_path / "p.old")
    (tmp_path / "p").symlink_to(tmp_path / "evil")
    with pytest.raises(MountRefused, match="symlink"), pin_mounts([_bind(source)], checked):
        pass


def test_pin_refuses_a_replaced_directory(tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.mkdir()
    checked = {str(ok): identity(str(ok))}
    ok.rename(tmp_path / "ok.old")
    ok.mkdir()
    with pytest.raises(MountRefused, match="replaced"), pin_mounts([_bind(ok)], checked):
        pass


def test_pin_refuses_a_vanished_source(tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.mkdir()
    checked = {str(ok): identity(str(ok))}
    os.rmdir(ok)
    with pytest.raises(MountRefused, match="vanished"), pin_mounts([_bind(ok)], checked):
        pass
