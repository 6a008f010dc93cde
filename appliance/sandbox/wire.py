"""The host's side of the runner protocol (sans-IO): the request frame out, the result record in.

The runner (:mod:`appliance.sandbox.runner`, stdlib only, frozen into the image) reads one request frame
on its stdin FIFO and writes newline-delimited JSON on its result FIFO: ``{"ready": true}`` once it waits
at the gate, then one result record after the command ended. The two sides share no code (the runner
must stay stdlib-only); ``tests/sandbox/test_sandbox_wire.py`` checks this encoder against the runner's
own parser and the runner's record against :func:`parse_result_channel`.

Rules:
- The frame is the JSON line, then exactly ``stdin_bytes`` raw bytes. The command's stdin (where secrets
  travel) is never inside the JSON, so it never becomes an immutable ``str`` on either side; the caller
  owns the ``bytearray`` and zeroes it.
- A record that is missing, truncated or malformed is reported as absent (``None`` + a reason), never
  raised: the host then falls back to the engine's exit status and says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs

__all__ = [
    "PROTOCOL_VERSION",
    "RunRecord",
    "RunRequest",
    "encode_frame",
    "parse_result_channel",
]

PROTOCOL_VERSION = 1
MAX_CHANNEL = 65_536


@attrs.frozen
class RunRequest:
    """What the runner needs to start the command; everything but the stdin bytes."""

    argv: tuple[str, ...]
    cwd: str
    timeout_s: float
    out_cap: int
    err_cap: int
    egress: bool = False
    env: tuple[tuple[str, str], ...] = ()

    def header(self, stdin_bytes: int) -> bytes:
        doc = {
            "v": PROTOCOL_VERSION,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "env": dict(self.env),
            "timeout_s": self.timeout_s,
            "out_cap": self.out_cap,
            "err_cap": self.err_cap,
            "egress": self.egress,
            "stdin_bytes": stdin_bytes,
        }
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def encode_frame(request: RunRequest, stdin: bytes | bytearray) -> bytearray:
    """Header line + stdin bytes, as one ``bytearray`` the caller zeroes after writing."""
    frame = bytearray(request.header(len(stdin)))
    frame += stdin
    return frame


@attrs.frozen
class RunRecord:
    """The runner's account of one command. ``exit_code`` is None when a signal ended it (``signal``)
    or when the command never started (``errors`` says why). CPU and ``max_rss_kb`` are the kernel's
    ``wait4`` figures for the command and the children it waited for; Linux carries the forking
    runner's RSS (~12 MB) into a child's ``ru_maxrss``, so small commands show that as a floor."""

    exit_code: int | None
    signal: int | None
    wall_ms: int
    user_ms: int
    sys_ms: int
    max_rss_kb: int
    out_bytes: int
    err_bytes: int
    out_truncated: bool
    err_truncated: bool
    timed_out: bool
    errors: tuple[str, ...] = ()

    @property
    def status(self) -> int:
        """Shell-style status: the exit code, or 128 + signal; 70 (EX_SOFTWARE) when nothing ran."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code if self.exit_code is not None else 70


_INT_FIELDS = ("wall_ms", "user_ms", "sys_ms", "max_rss_kb", "out_bytes", "err_bytes")
_BOOL_FIELDS = ("out_truncated", "err_truncated", "timed_out")


def _record(doc: Mapping[str, object]) -> RunRecord:
    """Build a record from a decoded line. Raises ValueError naming the bad field."""
    ints: dict[str, int] = {}
    for key in _INT_FIELDS:
        value = doc.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer")
        ints[key] = value
    bools: dict[str, bool] = {}
    for key in _BOOL_FIELDS:
        flag = doc.get(key)
        if not isinstance(flag, bool):
            raise ValueError(f"{key} must be true or false")  # noqa: TRY004 (a bad record, not a bug)
        bools[key] = flag
    optional: dict[str, int | None] = {}
    for key in ("exit_code", "signal"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"{key} must be an integer or null")
        optional[key] = value
    errors = doc.get("errors", [])
    if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
        raise ValueError("errors must be a list of strings")
    return RunRecord(
        exit_code=optional["exit_code"],
        signal=optional["signal"],
        errors=tuple(e[:200] for e in errors[:5]),
        wall_ms=ints["wall_ms"],
        user_ms=ints["user_ms"],
        sys_ms=ints["sys_ms"],
        max_rss_kb=ints["max_rss_kb"],
        out_bytes=ints["out_bytes"],
        err_bytes=ints["err_bytes"],
        out_truncated=bools["out_truncated"],
        err_truncated=bools["err_truncated"],
        timed_out=bools["timed_out"],
    )


def parse_result_channel(data: bytes) -> tuple[bool, RunRecord | None, str]:
    """Parse everything read from the result FIFO: ``(ready_seen, record or None, why not)``.

    The last complete line with ``"v"`` is the record; anything else in the channel is ignored.
    """
    if len(data) > MAX_CHANNEL:
        return False, None, "result channel overflowed"
    ready = False
    record: RunRecord | None = None
    why = "no result record (the runner did not finish)"
    for line in data.split(b"\n")[:-1]:  # a last piece without its newline is incomplete
        try:
            doc = json.loads(line)
        except ValueError:
            why = "malformed result line"
            continue
        if not isinstance(doc, dict):
            why = "malformed result line"
            continue
        if doc.get("ready") is True:
            ready = True
        elif doc.get("v") == PROTOCOL_VERSION:
            try:
                record = _record(doc)
            except ValueError as exc:
                record, why = None, f"bad result record: {exc}"
        else:
            why = "unknown result line"
    return ready, record, "" if record is not None else why
