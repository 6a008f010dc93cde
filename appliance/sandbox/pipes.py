"""Per-run FIFOs between host and runner: stdin (the request frame), stdout, stderr, result.

Why FIFOs and not the engine's attach stream: the data never touches a file or the engine's log (a FIFO
holds bytes only in the kernel's pipe buffer), both engines behave the same, and there is no hijacked
HTTP connection to manage. The run dir is mode 0711 inside the 0700 runtime dir and is bind-mounted
read-only at :data:`~appliance.sandbox.policy.RUNNER_PIPE_DIR`.

The host opens every FIFO ``O_RDWR`` when it creates them, so the runner's opens never block and a
reader or writer always exists:
- ``stdin``: the runner blocks *reading* its request frame (the gate) until the host writes it;
- ``stdout``/``stderr``: read by the host into its caps (the runner caps first; the host's cap is the
  backstop) and drained after the container exited;
- ``result``: newline-delimited JSON from the runner (``ready``, then the result record), read by the
  host while it waits and after the exit.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import attrs
import trio

from appliance.sandbox.output import OutputCap
from appliance.sandbox.policy import RUNNER_PIPE_DIR, Mount, MountKind
from appliance.sandbox.wire import MAX_CHANNEL

__all__ = ["FIFOS", "RunPipes", "create_run_pipes", "default_runtime_dir", "feed_stdin"]

_READ_CHUNK = 65_536
FIFOS = ("stdin", "stdout", "stderr", "result")


def default_runtime_dir() -> str:
    """A tmpfs dir for sockets and pipes: ``/run/appliance-sandbox`` as root, else XDG_RUNTIME_DIR."""
    if os.geteuid() == 0:
        return "/run/appliance-sandbox"
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, "appliance-sandbox")


@attrs.define
class RunPipes:
    """The run dir, the host's ends of the FIFOs, and the caps the outputs fill."""

    path: str
    stdout: OutputCap
    stderr: OutputCap
    fds: dict[str, int] = attrs.Factory(dict)
    result: bytearray = attrs.Factory(bytearray)

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

    def read_result(self) -> bool:
        """Read what the result FIFO holds now, without blocking; True when something came."""
        fd = self.fds.get("result")
        got = False
        while fd is not None and len(self.result) <= MAX_CHANNEL:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                break
            self.result += chunk
            got = True
        return got

    async def wait_record(self) -> None:
        """Wait until the runner's final record (a complete line after ``ready``) has arrived."""
        fd = self.fds["result"]
        while self.result.count(b"\n") < 2 and len(self.result) <= MAX_CHANNEL:
            if not self.read_result():
                await trio.lowlevel.wait_readable(fd)

    async def wait_result(self) -> None:
        """Wait until the result FIFO has data and read it."""
        fd = self.fds["result"]
        while not self.read_result():
            await trio.lowlevel.wait_readable(fd)

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
        self.read_result()

    def close(self, name: str) -> None:
        fd = self.fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def cleanup(self) -> None:
        """Close every host end and remove the run dir (idempotent)."""
        for name in list(self.fds):
            self.close(name)
        shutil.rmtree(self.path, ignore_errors=True)


def _mkfifo(path: str, uid: int, gid: int) -> None:
    os.mkfifo(path, 0o600)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
    else:  # rootless: the container user maps to a subuid we cannot chown to
        os.chmod(path, 0o666)


def create_run_pipes(runtime_dir: str, *, uid: int, gid: int, cap: int) -> RunPipes:
    """Create a fresh run dir with the four FIFOs, each opened ``O_RDWR`` by the host.

    The caller owns the result and calls :meth:`RunPipes.cleanup`.
    """
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    path = tempfile.mkdtemp(prefix="run-", dir=runtime_dir)
    pipes = RunPipes(path, OutputCap(cap), OutputCap(cap))
    try:
        os.chmod(path, 0o711)
        for name in FIFOS:
            fifo = os.path.join(path, name)
            _mkfifo(fifo, uid, gid)
            pipes.fds[name] = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        pipes.cleanup()
        raise
    return pipes


async def feed_stdin(pipes: RunPipes, frame: bytearray) -> None:
    """Write the request ``frame`` to the stdin FIFO, then zero ``frame``.

    The host's end stays open until :meth:`RunPipes.cleanup`: a FIFO drops its buffered bytes when the
    last end closes, and the runner may not have opened its end yet. The caller cancels this when the
    container exits first (a full pipe nobody reads).
    """
    fd = pipes.fds["stdin"]
    view = memoryview(frame)
    try:
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
                continue
            view = view[written:]
    finally:
        view.release()
        frame[:] = bytes(len(frame))
