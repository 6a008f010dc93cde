"""The sandbox runner: PID 1 of every sandbox container, frozen with PyInstaller into the runner image.

Stdlib only (checked by ``tests/sandbox/test_runner.py``): it ships alone in a ``FROM scratch`` image,
without trio, attrs or the rest of the appliance. One run, in order:

1. Open the per-run FIFOs the host bind-mounts read-only at ``/run/appliance`` (``stdin``, ``stdout``,
   ``stderr``, ``result``) and write a ``{"ready": true}`` line on ``result`` (the warm pool pauses the
   container after it).
2. **Gate:** block reading the request frame from ``stdin``: one JSON line (argv, cwd, env, timeout,
   output caps, egress on/off, ``stdin_bytes``) followed by exactly ``stdin_bytes`` raw bytes (the
   command's stdin; secrets travel here and nowhere else). The host writes it only after it re-verified
   every mount, so nothing runs before that. The bytes land in a ``bytearray`` that is zeroed once they
   were handed to the command; they never reach an environment, argv, file or log.
3. With ``egress``: listen on 127.0.0.1:3128 and relay each connection to the host's audited proxy at
   ``/run/appliance/egress.sock`` (the container's network stays ``none``); ``HTTP(S)_PROXY`` point there.
4. Spawn the command without a shell, in its own session, with stdio on pipes the runner relays: output
   beyond a cap is dropped and its pipe closed (the writer gets ``SIGPIPE``, as with ``head -c``); at the
   timeout the command's process group is killed.
5. Write ONE result record (JSON line on ``result``: exit code or signal, wall ms, user/sys CPU ms, max
   RSS kB, bytes out/err, truncated flags, timed out, runner errors) and exit with the command's status
   (``128 + signal`` when killed), which is what the engine reports when the record is missing.

Without the FIFOs (a bare ``podman run IMAGE CMD...``) the runner simply ``exec``s its arguments.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import Any

PIPE_DIR = "/run/appliance"
PROXY_PORT = 3128
PROTOCOL_VERSION = 1
MAX_HEADER = 65_536
MAX_STDIN = 16 * 1024 * 1024
MAX_ERRORS = 5
CHUNK = 65_536
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
EX_USAGE = 64
EX_SOFTWARE = 70


class RequestError(ValueError):
    """The request frame is malformed; the run fails with a runner error, nothing is started."""


# ----------------------------------------------------------------------------------------------- request


def parse_request(line: bytes) -> dict[str, Any]:
    """Validate the JSON request line (without its newline). Raises :class:`RequestError`.

    Pure: the host's encoder (``appliance.sandbox.wire``) is tested against this function.
    """
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"request is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != PROTOCOL_VERSION:
        raise RequestError("request must be an object with v=1")
    argv = doc.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise RequestError("argv must be a non-empty list of strings")
    if not argv[0]:
        raise RequestError("argv[0] is empty")
    env = doc.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in env.items()
    ):
        raise RequestError("env must map names to strings")
    cwd = doc.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise RequestError("cwd must be an absolute path")
    numbers = {}
    for key, low in (("timeout_s", 0.001), ("out_cap", 1), ("err_cap", 1), ("stdin_bytes", 0)):
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise RequestError(f"{key} must be a number >= {low}")
        numbers[key] = value
    if not isinstance(doc.get("egress", False), bool):
        raise RequestError("egress must be true or false")
    if numbers["stdin_bytes"] > MAX_STDIN or int(numbers["stdin_bytes"]) != numbers["stdin_bytes"]:
        raise RequestError(f"stdin_bytes must be an integer <= {MAX_STDIN}")
    return {
        "argv": [str(a) for a in argv],
        "env": {str(k): str(v) for k, v in env.items()},
        "cwd": cwd,
        "timeout_s": float(numbers["timeout_s"]),
        "out_cap": int(numbers["out_cap"]),
        "err_cap": int(numbers["err_cap"]),
        "stdin_bytes": int(numbers["stdin_bytes"]),
        "egress": bool(doc.get("egress", False)),
    }


def read_frame(fd: int) -> tuple[dict[str, Any], bytearray]:
    """Read the request line and then exactly ``stdin_bytes`` into a fresh ``bytearray`` (zero it!).

    Blocks until the host writes: this is the gate. Raises :class:`RequestError`.
    """
    buf = bytearray()
    while b"\n" not in buf:
        if len(buf) > MAX_HEADER:
            raise RequestError("request line too long")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RequestError("stdin closed before the request line ended")
        buf += chunk
    end = buf.index(b"\n")
    request = parse_request(bytes(buf[:end]))
    size = request["stdin_bytes"]
    payload = bytearray(size)
    got = min(size, len(buf) - end - 1)
    payload[:got] = buf[end + 1 : end + 1 + got]
    buf[:] = bytes(len(buf))
    view = memoryview(payload)
    try:
        while got < size:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                raise RequestError(f"stdin closed after {got} of {size} bytes")
            got += n
    finally:
        view.release()
    return request, payload


# ----------------------------------------------------------------------------------------------- result


def result_record(
    *,
    status: int | None,
    wall_ms: int,
    rusage: Any = None,
    counts: tuple[int, int] = (0, 0),
    truncated: tuple[bool, bool] = (False, False),
    timed_out: bool = False,
    errors: list[str] | None = None,
) -> bytes:
    """The one JSON result line. ``status`` is a ``wait`` status (None: the command never ran)."""
    exit_code: int | None = None
    sig: int | None = None
    if status is not None:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        else:
            exit_code = os.waitstatus_to_exitcode(status)
    doc = {
        "v": PROTOCOL_VERSION,
        "exit_code": exit_code,
        "signal": sig,
        "wall_ms": wall_ms,
        "user_ms": int(rusage.ru_utime * 1000) if rusage is not None else 0,
        "sys_ms": int(rusage.ru_stime * 1000) if rusage is not None else 0,
        "max_rss_kb": int(rusage.ru_maxrss) if rusage is not None else 0,
        "out_bytes": counts[0],
        "err_bytes": counts[1],
        "out_truncated": truncated[0],
        "err_truncated": truncated[1],
        "timed_out": timed_out,
        "errors": [e[:200] for e in (errors or [])][:MAX_ERRORS],
    }
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def exit_status(record: bytes) -> int:
    doc = json.loads(record)
    if doc["signal"] is not None:
        return 128 + int(doc["signal"])
    return int(doc["exit_code"]) if doc["exit_code"] is not None else EX_SOFTWARE


# ----------------------------------------------------------------------------------------------- relay


class _Stream:
    """One output stream: the command's pipe -> the host's FIFO, at most ``cap`` bytes."""

    __slots__ = ("cap", "count", "dst", "src", "truncated")

    def __init__(self, src: int, dst: int, cap: int) -> None:
        self.src: int | None = src
        self.dst = dst
        self.cap = cap
        self.count = 0
        self.truncated = False

    def pump(self, sel: selectors.BaseSelector) -> None:
        """Move what is readable now; close the source at EOF or when the cap is reached."""
        assert self.src is not None
        try:
            chunk = os.read(self.src, CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self.close(sel)
            return
        room = self.cap - self.count
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        try:
            _write_all(self.dst, chunk)
        except BrokenPipeError:  # the host stopped reading: same as a full cap
            self.truncated = True
        self.count += len(chunk)
        if self.truncated:
            self.close(sel)

    def drain(self, sel: selectors.BaseSelector) -> None:
        while self.src is not None:
            before = self.count
            self.pump(sel)
            if self.count == before and self.src is not None:
                return  # nothing more right now (background writers are not waited for)

    def close(self, sel: selectors.BaseSelector) -> None:
        if self.src is not None:
            sel.unregister(self.src)
            os.close(self.src)
            self.src = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Relay:
    """127.0.0.1:3128 in the container -> the host's egress proxy socket, one pair per connection."""

    def __init__(self, sock_path: str, sel: selectors.BaseSelector) -> None:
        self.sock_path = sock_path
        self.sel = sel
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", PROXY_PORT))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.peers: dict[socket.socket, socket.socket] = {}
        sel.register(self.listener, selectors.EVENT_READ, self.accept)

    def accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.sock_path)
        except OSError:
            client.close()
            upstream.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            a.settimeout(10)
            self.peers[a] = b
            self.sel.register(a, selectors.EVENT_READ, lambda s=a: self.forward(s))

    def forward(self, src: socket.socket) -> None:
        dst = self.peers[src]
        try:
            data = src.recv(CHUNK)
            if data:
                dst.sendall(data)
                return
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(src)
            return
        self.sel.unregister(src)
        if dst.fileno() == -1 or dst not in self.peers or self._half_closed(dst):
            self.drop(src)

    def _half_closed(self, sock: socket.socket) -> bool:
        try:
            self.sel.get_key(sock)
        except KeyError:
            return True
        return False

    def drop(self, sock: socket.socket) -> None:
        for s in (sock, self.peers.get(sock)):
            if s is None:
                continue
            self.peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(s)
            s.close()


# ----------------------------------------------------------------------------------------------- run


def _open_pipes(pipe_dir: str) -> dict[str, int]:
    fds = {"stdin": os.open(os.path.join(pipe_dir, "stdin"), os.O_RDONLY | os.O_CLOEXEC)}
    for name in ("stdout", "stderr"):
        fds[name] = os.open(os.path.join(pipe_dir, name), os.O_WRONLY | os.O_CLOEXEC)
    fds["result"] = os.open(os.path.join(pipe_dir, "result"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return fds


def _child_env(request: dict[str, Any], proxy: bool) -> dict[str, str]:
    env = {**BASE_ENV, **request["env"]}
    if proxy:
        url = f"http://127.0.0.1:{PROXY_PORT}"
        env.update(HTTP_PROXY=url, HTTPS_PROXY=url, http_proxy=url, https_proxy=url)
    return env


def serve(pipe_dir: str = PIPE_DIR) -> int:
    """Run one request from the FIFOs in ``pipe_dir``; return the exit status for the runner."""
    fds = _open_pipes(pipe_dir)
    _write_all(fds["result"], b'{"ready":true}\n')
    errors: list[str] = []
    try:
        request, payload = read_frame(fds["stdin"])
    except (RequestError, OSError) as exc:
        record = result_record(status=None, wall_ms=0, errors=[f"bad request: {exc}"])
        _write_all(fds["result"], record)
        return EX_SOFTWARE
    finally:
        os.close(fds["stdin"])
    try:
        record = _run(request, payload, fds, errors, os.path.join(pipe_dir, "egress.sock"))
    finally:
        payload[:] = bytes(len(payload))
    _write_all(fds["result"], record)
    return exit_status(record)


def _run(
    request: dict[str, Any], payload: bytearray, fds: dict[str, int], errors: list[str], sock_path: str
) -> bytes:
    sel = selectors.DefaultSelector()
    relay = None
    if request["egress"]:
        try:
            relay = _Relay(sock_path, sel)
        except OSError as exc:
            errors.append(f"egress relay did not start: {exc}")
            return result_record(status=None, wall_ms=0, errors=errors)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            request["argv"],
            stdin=in_r,
            stdout=out_w,
            stderr=err_w,
            env=_child_env(request, relay is not None),
            cwd=request["cwd"],
            start_new_session=True,
            close_fds=True,
            restore_signals=True,
        )
    except OSError as exc:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        missing = exc.errno == errno.ENOENT
        where = f" ({exc.filename})" if exc.filename not in (None, request["argv"][0]) else ""
        errors.append(f"cannot run {request['argv'][0]!r}: {exc.strerror}{where}")
        return result_record(status=(127 if missing else 126) << 8, wall_ms=0, errors=errors)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    spawned = time.monotonic()
    out = _Stream(out_r, fds["stdout"], request["out_cap"])
    err = _Stream(err_r, fds["stderr"], request["err_cap"])
    for fd, stream in ((out_r, out), (err_r, err)):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, lambda s=stream: s.pump(sel))
    sel.register(wake_r, selectors.EVENT_READ, lambda: _drain_wake(wake_r))
    feeder = _Feeder(in_w, payload, sel)
    deadline = spawned + request["timeout_s"]
    status: int | None = None
    rusage = None
    timed_out = False
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0 and not timed_out:
            timed_out = True
            _kill_group(proc.pid)
        for key, _ in sel.select(None if timed_out else max(left, 0)):
            key.data()
        status, rusage = _reap(proc.pid, status, rusage)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall_ms = int((time.monotonic() - spawned) * 1000)
    feeder.close()
    for stream in (out, err):
        stream.drain(sel)
        stream.close(sel)
    if relay is not None:
        relay.listener.close()
    return result_record(
        status=status,
        wall_ms=wall_ms,
        rusage=rusage,
        counts=(out.count, err.count),
        truncated=(out.truncated, err.truncated),
        timed_out=timed_out,
        errors=errors,
    )


class _Feeder:
    """Writes the command's stdin from the payload without blocking the loop; zeroes nothing itself
    (the caller owns the payload) but drops its view at the end."""

    def __init__(self, fd: int, payload: bytearray, sel: selectors.BaseSelector) -> None:
        self.fd: int | None = fd
        self.view = memoryview(payload)
        self.sel = sel
        if self.view:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_WRITE, self.write)
        else:
            self.close()

    def write(self) -> None:
        assert self.fd is not None
        try:
            self.view = self.view[os.write(self.fd, self.view) :]
        except BlockingIOError:
            return
        except BrokenPipeError:
            self.view = self.view[:0]
        if not self.view:
            self.close()

    def close(self) -> None:
        self.view.release()
        if self.fd is not None:
            with contextlib.suppress(KeyError):
                self.sel.unregister(self.fd)
            os.close(self.fd)
            self.fd = None


def _drain_wake(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _reap(child: int, status: int | None, rusage: Any) -> tuple[int | None, Any]:
    """Reap every exited process (PID 1 inherits orphans); return the command's status when it ended."""
    while True:
        try:
            pid, st, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return status, rusage
        if pid == 0:
            return status, rusage
        if pid == child:
            status, rusage = st, ru


def _kill_group(pid: int) -> None:
    for target in (-pid, pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pipe_dir = os.environ.get("APPLIANCE_RUNNER_PIPE_DIR", PIPE_DIR)  # set by tests; the engine never does
    if not os.path.exists(os.path.join(pipe_dir, "stdin")):
        if not args:
            print("appliance-runner: no command and no /run/appliance pipes", file=sys.stderr)
            return EX_USAGE
        try:
            os.execvp(args[0], args)
        except OSError as exc:
            print(f"appliance-runner: cannot run {args[0]!r}: {exc.strerror}", file=sys.stderr)
            return 127 if exc.errno == errno.ENOENT else 126
    status = serve(pipe_dir)
    os._exit(status)  # everything is written; skip the interpreter's teardown (latency)


if __name__ == "__main__":
    sys.exit(main())
