from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import zstandard

from appliance.defender.ledger import QuarantineLedger, read_entries, verify_chain


def _entry(i: int, writer: str = "w") -> dict[str, object]:
    return {"kind": "command", "verdict": "block", "writer": writer, "n": i, "reasons": [{"rule": "x"}]}


def test_append_builds_a_verifiable_chain(tmp_path: Path) -> None:
    ledger = QuarantineLedger(tmp_path / "q.jsonl", clock=lambda: 1000.0)
    first = ledger.append(_entry(0))
    second = ledger.append(_entry(1))
    assert first["prev_sha256"] == "0" * 64
    assert second["prev_sha256"] == first["sha256"]
    assert [e["n"] for e in read_entries(tmp_path / "q.jsonl")] == [0, 1]
    assert verify_chain(tmp_path / "q.jsonl") == []


def test_edits_break_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    ledger = QuarantineLedger(path)
    for i in range(3):
        ledger.append(_entry(i))
    lines = path.read_text().splitlines()
    tampered = json.loads(lines[1])
    tampered["verdict"] = "allow"
    lines[1] = json.dumps(tampered)
    path.write_text("\n".join(lines) + "\n")
    assert verify_chain(path)


def test_rotation_compresses_segments_and_keeps_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    ledger = QuarantineLedger(path, max_bytes=600, keep=3)
    for i in range(20):
        ledger.append(_entry(i))
    segments = ledger.segments()
    assert segments
    assert len(segments) <= 3
    assert all(s.name.endswith(".jsonl.zst") for s in segments)
    with segments[-1].open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as reader:
        data = reader.read()
    assert json.loads(data.splitlines()[0])["kind"] == "command"
    numbers = [e["n"] for e in read_entries(path)]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 19
    assert verify_chain(path) == []


def test_torn_last_line_is_skipped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    ledger = QuarantineLedger(path)
    ledger.append(_entry(0))
    with path.open("ab") as fh:
        fh.write(b'{"kind": "command", "verd')  # a crash mid-write
    assert [e["n"] for e in read_entries(path)] == [0]
    ledger.append(_entry(1))
    assert [e["n"] for e in read_entries(path)] == [0, 1]
    assert verify_chain(path) == []


def test_concurrent_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    ledger = QuarantineLedger(path, max_bytes=20_000)

    def write(name: str) -> None:
        for i in range(40):
            ledger.append(_entry(i, name))

    threads = [threading.Thread(target=write, args=(f"t{k}",)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    entries = list(read_entries(path))
    assert len(entries) == 240
    assert verify_chain(path) == []


def _process_writer(path: str, name: str) -> None:
    ledger = QuarantineLedger(path, max_bytes=20_000)
    for i in range(30):
        ledger.append(_entry(i, name))


def test_concurrent_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(path), f"p{k}")) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entries = list(read_entries(path))
    assert len(entries) == 90
    for writer in ("p0", "p1", "p2"):
        assert [e["n"] for e in entries if e["writer"] == writer] == list(range(30))
    assert verify_chain(path) == []
