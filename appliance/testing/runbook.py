"""Doc-test support for ``runbooks/*.md``: extract the ``sh`` blocks and run them, in order, against a real
appliance in temp dirs, so a runbook that drifts from the CLI fails CI instead of an operator.

A fenced block with the info string ``sh`` is executed; ``sh no-doctest`` marks a block that is shown to
operators but not run (long-running or device-only commands such as ``systemctl``). Runbooks are written
for a device: the data dir is the default ``~/.local/share/appliance`` and the gateway port is 18789. The
runner sets ``HOME`` to a temp dir (so ``~`` is ours), points ``APPLIANCE_DATA_DIR`` at the same path and
rewrites the port to a free loopback one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs

from appliance.testing.process import free_port, wait_http_ok

__all__ = ["NO_DOCTEST", "Block", "RunbookShell", "executed_blocks", "parse_blocks", "sh_blocks"]

#: the info-string word that shows a block to operators without executing it
NO_DOCTEST = "no-doctest"
DEVICE_PORT = "18789"

_FENCE = re.compile(r"^```(sh(?:[ \t][^\n]*)?)\n(.*?)^```", flags=re.S | re.M)


@attrs.frozen
class Block:
    info: str
    body: str
    line: int

    @property
    def executed(self) -> bool:
        return NO_DOCTEST not in self.info.split()


def parse_blocks(text: str) -> list[Block]:
    """Every ``sh`` fenced block, executed or not, with its 1-based line number."""
    return [
        Block(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
    ]


def sh_blocks(text: str) -> list[str]:
    """The bodies of the blocks a doc-test runs (the ``sh`` ones not marked ``no-doctest``)."""
    return [b.body for b in parse_blocks(text) if b.executed]


@attrs.define
class RunbookShell:
    """A device-like shell environment in ``root``: its own HOME, data dir, PATH and gateway port."""

    root: Path
    port: int = attrs.field(factory=free_port)
    extra_env: dict[str, str] = attrs.field(factory=dict)
    #: literal text swaps applied to every block (e.g. a real API base -> a loopback fake)
    replacements: dict[str, str] = attrs.field(factory=dict)
    outputs: list[str] = attrs.field(factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "appliance"

    @property
    def cwd(self) -> Path:
        return self.root / "work"

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        bin_dir = str(Path(sys.executable).parent)
        base.update(
            {
                "HOME": str(self.home),
                "APPLIANCE_DATA_DIR": str(self.data_dir),
                "APPLIANCE_GATEWAY_PORT": str(self.port),
                "PATH": f"{bin_dir}:{base.get('PATH', '/usr/bin:/bin')}",
            }
        )
        base.update(self.extra_env)
        return base

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cwd.mkdir(parents=True, exist_ok=True)

    def localise(self, body: str) -> str:
        """The device port becomes our free loopback port; then the configured replacements."""
        body = body.replace(DEVICE_PORT, str(self.port))
        for old, new in self.replacements.items():
            body = body.replace(old, new)
        return body

    def run(
        self, block: Block | str, *, timeout_s: float = 60.0, expect_rc: int = 0, cwd: Path | None = None
    ) -> str:
        """Run one block with ``bash -eo pipefail``; return stdout (and keep it in ``outputs``)."""
        body = block.body if isinstance(block, Block) else block
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", self.localise(body)],
            env=self.env(),
            cwd=cwd or self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == expect_rc, (body, done.returncode, done.stdout[-3000:], done.stderr[-3000:])
        self.outputs.append(done.stdout)
        return done.stdout

    @contextmanager
    def serving(self, env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
        """``appliance serve`` as the device runs it (no token given: it uses or generates
        ``<data_dir>/gateway.token``); SIGTERM on exit."""
        full = self.env()
        full.update(env or {})
        log_path = self.root / f"serve-{len(self.outputs)}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(["appliance", "serve"], env=full, cwd=self.cwd, stdout=log, stderr=log)
        try:
            try:
                wait_http_ok(self.port)
            except TimeoutError:
                proc.kill()
                proc.wait(20)
                raise TimeoutError(f"serve did not start:\n{log_path.read_text(errors='replace')}") from None
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(20)


def executed_blocks(path: Path) -> list[Block]:
    return [b for b in parse_blocks(path.read_text()) if b.executed]
