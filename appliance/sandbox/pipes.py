"""Per-run pipes between host and container: stdin (secrets), stdout and stderr, as FIFOs.

Why FIFOs and not the engine's attach stream: the data never touches a file or the engine's log (a FIFO
holds bytes only in the kernel's pipe buffer), both engines behave the same, and there is no hijacked
HTTP connection to manage. The run dir lives on a tmpfs (``/run``), mode 0700 above it, and is bind-mounted
read-only at :data:`~appliance.sandbox.policy.RUNNER_PIPE_DIR`; the runner entry in the image redirects
the command's stdio to the FIFOs it finds there.

- stdout/stderr: the host opens them ``O_RDWR`` so a reader always exists (the container's open never
  blocks, and reads never see a premature EOF); when the output cap is reached the host closes its end and
  the writer gets ``SIGPIPE``. After the container exits the host drains what is left.
- stdin: the host waits until the runner opens the FIFO for reading, writes the bytes, closes (EOF), and
  overwrites its copy of the bytes where Python allows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator

import attrs
import trio

from appliance.sandbox.output import OutputCap
from appliance.sandbox.policy import RUNNER_PIPE_DIR, Mount, MountKind

__all__ = ["RunPipes", "default_runtime_dir", "open_run_pipes"]

_READ_CHUNK = 65_536


def default_runtime_dir() -> str:
    """A tmpfs dir for sockets and pipes: ``/run/appliance-sandbox`` as root, else XDG_RUNTIME_DIR."""
    if os.geteuid() == 0:
        return "/run/appliance-sandbox"
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, "appliance-sandbox")


@attrs.define
class RunPipes:
    """The run dir, the host's ends of stdout/stderr (``O_RDWR``), and the caps they fill."""

    path: str
    has_stdin: bool
    stdout: OutputCap
    stderr: OutputCap
    fds: dict[str, int] = attrs.Factory(dict)

    def mount(self) -> Mount:
        return Mount(MountKind.BIND, self.path, RUNNER_PIPE_DIR, readonly=True)

    async def pump(self, name: str) -> None:
        """Read one output FIFO into its cap until the cap is full (then close: SIGPIPE) or cancelled."""
        cap = self.stdout if name == "stdout" else self.stderr
        while not cap.full:
            fd = self.fds.get(name)
            if fd is None:
                return
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            cap.feed(chunk)
        self.close(name)

    def drain(self) -> None:
        """After the container exited: read what is left without blocking."""
        for name, cap in (("stdout", self.stdout), ("stderr", self.stderr)):
            fd = self.fds.get(name)
            while fd is not None and not cap.full:
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    break
                cap.feed(chunk)

    def close(self, name: str) -> None:
        fd = self.fds.pop(name, None)
        if fd is not None:
            os.close(fd)


def _mkfifo(path: str, uid: int, gid: int) -> None:
    os.mkfifo(path, 0o600)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
    else:  # rootless: the container user maps to a subuid we cannot chown to
        os.chmod(path, 0o666)


@contextlib.asynccontextmanager
async def open_run_pipes(
    runtime_dir: str, *, uid: int, gid: int, has_stdin: bool, cap: int
) -> AsyncIterator[RunPipes]:
    """Create a fresh run dir with the FIFOs and open the host's output ends; remove all afterwards."""
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    path = tempfile.mkdtemp(prefix="run-", dir=runtime_dir)
    pipes = RunPipes(path, has_stdin, OutputCap(cap), OutputCap(cap))
    try:
        os.chmod(path, 0o711)
        for name in ("stdout", "stderr") + (("stdin",) if has_stdin else ()):
            _mkfifo(os.path.join(path, name), uid, gid)
        for name in ("stdout", "stderr"):
            pipes.fds[name] = os.open(os.path.join(path, name), os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        yield pipes
    finally:
        for name in list(pipes.fds):
            pipes.close(name)
        shutil.rmtree(path, ignore_errors=True)


async def feed_stdin(fifo: str, data: bytearray) -> None:
    """Wait for the runner to open ``fifo`` for reading, write ``data``, close (EOF); then zero ``data``.

    Polls with ``O_NONBLOCK`` (``ENXIO`` until a reader exists); the caller cancels it when the container
    exits first.
    """
    delay = 0.001
    try:
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            await trio.sleep(delay)
            delay = min(delay * 2, 0.02)
        try:
            view = memoryview(data)
            try:
                while view:
                    try:
                        written = os.write(fd, view)
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(fd)
                        continue
                    except BrokenPipeError:
                        return
                    view = view[written:]
            finally:
                view.release()
        finally:
            os.close(fd)
    finally:
        data[:] = bytes(len(data))
