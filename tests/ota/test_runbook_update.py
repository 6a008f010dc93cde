"""Doc-test: run every ``sh`` block of runbooks/update-and-rollback.md, in order, against a real appliance
root with a running gateway on loopback and a local HTTP update repository."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from appliance.testing.runbook import sh_blocks
from appliance.testing.update_repo import UpdateRepo
from tests.ota.rig import V1, V2, VENV_APPLIANCE, Rig

pytestmark = pytest.mark.integration

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "update-and-rollback.md"
OTA_COMMANDS = ("update", "rollback", "commit", "boot-check")


def _wrapper(rig: Rig, bin_dir: Path) -> None:
    """``appliance`` on PATH, bound to this rig's root, data dir, key and service commands."""
    ota = shlex.join([str(VENV_APPLIANCE)])
    flags = shlex.join(rig.flags())
    script = f"""#!/bin/sh
cmd="$1"; shift
case "$cmd" in
  {"|".join(OTA_COMMANDS)}) exec {ota} "$cmd" {flags} "$@" ;;
  slots) exec {ota} slots --root {shlex.quote(str(rig.root))} "$@" ;;
  *) exec {shlex.quote(str(VENV_APPLIANCE))} "$cmd" --data-dir {shlex.quote(str(rig.data))} "$@" ;;
esac
"""
    bin_dir.mkdir()
    (bin_dir / "appliance").write_text(script)
    (bin_dir / "appliance").chmod(0o755)


def test_runbook_blocks_run_in_order(rig: Rig, tmp_path: Path) -> None:
    blocks = sh_blocks(RUNBOOK.read_text())
    assert len(blocks) >= 5
    rig.install_first()
    _wrapper(rig, tmp_path / "bin")
    outputs: list[str] = []
    with UpdateRepo(rig.artifacts.v2.archive.parent) as repo:
        env = rig.env({"UPDATE_SOURCE": repo.url, "OTA_ROOT": str(rig.root)})
        env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
        for block in blocks:
            done = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", block],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, (block, done.stdout, done.stderr[-3000:])
            outputs.append(done.stdout)
    text = "\n".join(outputs)
    assert f"committed {V2}" in text
    assert f"rolled back from {V2} to {V1}" in text
    assert "already rolled back" in text
    assert "nothing to commit" in text
    assert rig.current() == V2
    assert rig.marks() == ["v1-data"]
