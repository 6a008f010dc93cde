"""``appliance monitor``: a live terminal view of the running appliance, redrawn in place with plain ANSI.

Rules: :func:`render_frame` is pure (a stats document in, lines of text out, no escape codes), so it is
tested as text; :func:`run_view` is the shell: it samples every ``interval_s``, clears the screen with
ANSI codes, draws, and exits on ``q`` or Ctrl-C (the terminal is put in cbreak mode only while a tty,
and always restored). ``--once`` prints one frame and exits (scripts, CI, a dumb terminal).
"""

from __future__ import annotations

import contextlib
import select
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

__all__ = ["human_bytes", "render_frame", "run_view"]

CLEAR = "\x1b[H\x1b[2J"


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - loop returns


def _get(doc: Mapping[str, Any], *keys: str) -> Any:
    cur: Any = doc
    for key in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def render_frame(doc: Mapping[str, Any], *, clock: str = "") -> list[str]:
    """The lines of one frame for a stats document."""
    lines = [f"appliance monitor  {clock}  (q or Ctrl-C quits)", ""]
    if doc.get("running"):
        lines.append(f"gateway   pid {_fmt(doc.get('pid'))}  port {_fmt(doc.get('port'))}")
    else:
        lines.append("gateway   not running")
    proc = doc.get("process")
    if isinstance(proc, Mapping):
        lines.append(
            f"process   cpu {_fmt(proc.get('cpuPercent'), '%')}  rss {human_bytes(proc.get('rssBytes'))}"
            f" (peak {human_bytes(proc.get('peakRssBytes'))})  fds {_fmt(proc.get('fds'))}"
            f"  threads {_fmt(proc.get('threads'))}"
        )
        lines.append(
            f"io        read {human_bytes(proc.get('readBps'))}/s  write {human_bytes(proc.get('writeBps'))}/s"
            f"  cpu time {_fmt(proc.get('cpuSeconds'), ' s')}"
        )
    host = doc.get("host") or {}
    lines.append(
        f"host      load {_fmt(_get(host, 'load1'))} {_fmt(_get(host, 'load5'))} {_fmt(_get(host, 'load15'))}"
        f"  cpu {_fmt(_get(host, 'cpuPercent'), '%')} of {_fmt(_get(host, 'cores'))} cores"
    )
    lines.append(
        f"memory    {human_bytes(_get(host, 'memAvailableBytes'))} free of {human_bytes(_get(host, 'memTotalBytes'))}"
        f"   disk {human_bytes(_get(host, 'diskFreeBytes'))} free of {human_bytes(_get(host, 'diskTotalBytes'))}"
    )
    lines.append(
        f"store     db {human_bytes(_get(doc, 'store', 'dbBytes'))}  wal {human_bytes(_get(doc, 'store', 'walBytes'))}"
    )
    gw = doc.get("gateway") or {}
    if not _get(gw, "reachable"):
        lines.append("status    unreachable")
    else:
        lines.append(
            f"work      active requests {_fmt(_get(gw, 'activeRequests'))}  queued {_fmt(_get(gw, 'queued'))}"
            f"  running {_fmt(_get(gw, 'running'))}  sessions {_fmt(_get(gw, 'sessions'))}"
        )
        loop = _get(gw, "eventLoop")
        if isinstance(loop, Mapping):
            lines.append(
                f"loop      delay p99 {_fmt(loop.get('delayP99Ms'), ' ms')}  max {_fmt(loop.get('delayMaxMs'), ' ms')}"
                f"{'  DEGRADED' if loop.get('degraded') else ''}"
            )
        last = _get(gw, "lastTurn")
        if isinstance(last, Mapping):
            age = last.get("ageMs")
            ago = f"{age / 1000:.0f} s ago" if isinstance(age, int | float) else "?"
            lines.append(f"last turn {last.get('key')} ({ago})")
    verdicts = doc.get("verdicts")
    if isinstance(verdicts, list) and verdicts:
        lines.append("verdicts  " + "  ".join(str(v) for v in verdicts[-5:]))
    return lines


@contextlib.contextmanager
def _cbreak(stream: TextIO) -> Iterator[bool]:
    """cbreak mode on a tty (single keys, no echo), restored on exit; yields whether keys can be read."""
    try:
        import termios
        import tty

        fd = stream.fileno()
        if not stream.isatty():
            yield False
            return
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        yield False
        return
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(stream: TextIO, seconds: float, keys: bool) -> bool:
    """Sleep up to ``seconds``; True when ``q`` was pressed."""
    if not keys:
        time.sleep(seconds)
        return False
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([stream], [], [], left)
        if ready and stream.read(1) in ("q", "Q"):
            return True
    return False


def run_view(
    sample: Callable[[], Mapping[str, Any]],
    *,
    interval_s: float = 2.0,
    once: bool = False,
    out: TextIO | None = None,
    keys_in: TextIO | None = None,
) -> int:
    """Draw until ``q``/Ctrl-C (or once). ``sample()`` returns a fresh stats document each call."""
    out = out or sys.stdout
    if once:
        out.write("\n".join(render_frame(sample(), clock=time.strftime("%H:%M:%S"))) + "\n")
        return 0
    keys_stream = keys_in or sys.stdin
    try:
        with _cbreak(keys_stream) as keys:
            while True:
                frame = render_frame(sample(), clock=time.strftime("%H:%M:%S"))
                out.write(CLEAR + "\r\n".join(frame) + "\r\n")
                out.flush()
                if _wait_for_quit(keys_stream, interval_s, keys):
                    break
    except KeyboardInterrupt:
        pass
    return 0
