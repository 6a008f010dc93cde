"""Doc-test of the plugin section of ``runbooks/add-a-channel.md``: its ``sh`` blocks run in order against
a real appliance on loopback (temp HOME and data dir), as ``tests/runbooks`` runs the other sections."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from appliance.testing.runbook import Block, RunbookShell, executed_blocks

pytestmark = pytest.mark.integration

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "add-a-channel.md"
HEADING = "## 5. A channel from a plugin sidecar"


def plugin_blocks() -> list[Block]:
    text = RUNBOOK.read_text()
    start = text[: text.index(HEADING)].count("\n") + 1
    return [b for b in executed_blocks(RUNBOOK) if b.line > start]


def test_plugin_section_of_add_a_channel(tmp_path: Path) -> None:
    install, enable, message = plugin_blocks()
    shell = RunbookShell(tmp_path)
    shell.prepare()
    assert "-rwx" in shell.run(install)
    out = shell.run(enable)
    assert re.search(r"^OK +plugin:dropbox +channel plugin, runs /.*/plugins/dropbox/run$", out, re.M)
    assert "doctor: all checks passed" in out
    with shell.serving():
        out = shell.run(message)
    (reply,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert reply["chatId"] == "me"
    assert "epoch ms" in reply["text"]
    logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert '"plugin_started"' in logs
    assert "agent:main:plugin-dropbox:direct:me" in logs
    # a broken manifest stops serve with exit 78 and one line naming the file and the key
    manifest = shell.data_dir / "plugins" / "dropbox" / "plugin.toml"
    manifest.write_text(manifest.read_text().replace("command =", "comand ="))
    out = shell.run("appliance serve 2>&1 | tail -n 1; exit ${PIPESTATUS[0]}", expect_rc=78)
    assert out.startswith("appliance: ")
    assert "plugins/dropbox/plugin.toml: comand: unknown key" in out
