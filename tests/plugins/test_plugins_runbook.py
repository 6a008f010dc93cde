"""Doc-test of the plugin sections of ``runbooks/add-a-channel.md`` (5: a channel plugin, 6: a tools
plugin): their ``sh`` blocks run in order against a real appliance on loopback (temp HOME and data dir),
as ``tests/runbooks`` runs the other sections."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from appliance.testing.runbook import Block, RunbookShell, executed_blocks

pytestmark = pytest.mark.integration

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "add-a-channel.md"
HEADING = "## 5. A channel from a plugin sidecar"
TOOLS_HEADING = "## 6. Tools from a plugin sidecar"


def section_blocks(heading: str, next_heading: str | None = None) -> list[Block]:
    """The executed blocks from ``heading`` up to ``next_heading`` (or the end)."""
    text = RUNBOOK.read_text()
    start = text[: text.index(heading)].count("\n") + 1
    end = text[: text.index(next_heading)].count("\n") + 1 if next_heading else len(text)
    return [b for b in executed_blocks(RUNBOOK) if start < b.line < end]


def plugin_blocks() -> list[Block]:
    return section_blocks(HEADING, TOOLS_HEADING)


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


def test_tools_plugin_section_of_add_a_channel(tmp_path: Path) -> None:
    """Section 6 after section 5's drop-folder channel (its message reaches the notes tool through it)."""
    channel_install, channel_enable, _ = plugin_blocks()
    install, enable, message = section_blocks(TOOLS_HEADING)
    shell = RunbookShell(tmp_path)
    shell.prepare()
    shell.run(channel_install)
    shell.run(channel_enable)
    out = shell.run(install)
    handshake, listing = (json.loads(line) for line in out.splitlines() if line.strip())
    assert handshake["result"]["capabilities"] == ["tools.call", "tools.list"]
    assert [t["name"] for t in listing["result"]["tools"]] == ["add", "list"]
    out = shell.run(enable)
    assert 'enabled = ["notes", "dropbox"]' in out  # added to the existing [plugins] table
    assert re.search(r"^OK +plugin:notes +tools plugin, runs /.*/plugins/notes/run$", out, re.M)
    assert "doctor: all checks passed" in out
    with shell.serving():
        out = shell.run(message)
    reply, note = out.strip().splitlines()
    assert json.loads(reply) == {"chatId": "me", "text": "noted: buy milk"}
    assert note == "buy milk"
    logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert '"plugin_tools_listed"' in logs
    assert '"plugin_tool_called"' in logs


def test_tools_plugin_section_enables_notes_alone(tmp_path: Path) -> None:
    """Without section 5, the enable block appends a new [plugins] table."""
    install, enable, _ = section_blocks(TOOLS_HEADING)
    shell = RunbookShell(tmp_path)
    shell.prepare()
    shell.run(install)
    out = shell.run(enable)
    assert 'enabled = ["notes"]' in out
    assert "doctor: all checks passed" in out
