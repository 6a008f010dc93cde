"""The on-disk update history: one JSON line per event in ``<root>/history.jsonl``, plus one log event.

Rules: append-only; each line is written with one ``write`` and fsynced, so a crash loses at most the
line being written and never corrupts earlier ones (a torn last line is skipped on read).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from appliance.log import get_logger

__all__ = ["read_history", "record_event"]

log = get_logger("appliance.ota")


def record_event(path: Path, event: str, now: int, **fields: Any) -> dict[str, Any]:
    """Append ``event`` (a past-tense fact: ``update_committed``, ``rolled_back``...) and log it once."""
    entry: dict[str, Any] = {"ts": now, "event": event, **fields}
    line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info(event, **fields)
    return entry


def read_history(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a torn last line from a power cut
        if isinstance(item, dict):
            out.append(item)
    return out[-limit:] if limit else out
