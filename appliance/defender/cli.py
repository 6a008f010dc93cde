"""``appliance defender ...`` subcommands: argparse wiring plus handlers.

The lead wires :func:`add_defender_commands` into ``appliance/cli/main.py``; each parser sets ``handler`` to
a function ``(args) -> int`` (the exit code). Errors are raised as :class:`~appliance.errors.ApplianceError`
subclasses, which the CLI prints as one line with their ``exit_code``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from appliance.errors import ExitCode, NotFound, ValidationFailed

__all__ = ["add_defender_commands", "default_paths"]

_DATA_DIR = "~/.local/share/appliance"


def default_paths(data_dir: str = _DATA_DIR) -> dict[str, Path]:
    base = Path(data_dir).expanduser() / "defender"
    return {"manifest": base / "baseline.json", "ledger": base / "quarantine.jsonl"}


def _configured_data_dir() -> str:
    """The data dir the gateway uses (profile, operator file, APPLIANCE_DATA_DIR), so the ledger and
    baseline paths match serve's; a broken config falls back to the default and fails later, loudly."""
    from appliance.config import load_settings
    from appliance.errors import ConfigError

    try:
        return load_settings()[0].data_dir
    except ConfigError:
        return _DATA_DIR


def add_defender_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``defender`` and its subcommands on an argparse ``subparsers`` object."""
    paths = default_paths(_configured_data_dir())
    defender = subparsers.add_parser("defender", help="prompt/command scoring, integrity, quarantine ledger")
    sub = defender.add_subparsers(dest="defender_command", required=True)

    p = sub.add_parser("check", aliases=["score-prompt"], help="score one text for prompt injection")
    p.add_argument("text")
    p.add_argument("--source", choices=["owner", "user", "untrusted"], default="user")
    p.add_argument("--review-threshold", type=float, default=0.5)
    p.add_argument("--block-threshold", type=float, default=0.8)
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("check-command", aliases=["score-command"], help="score one shell command")
    p.add_argument("command")
    p.add_argument("--workspace", action="append", default=[], help="absolute path the agent may write to")
    p.add_argument("--review-threshold", type=float, default=0.5)
    p.add_argument("--block-threshold", type=float, default=0.8)
    p.set_defaults(handler=cmd_check_command)

    p = sub.add_parser("eval", help="detection / false-positive rates over a labelled JSONL file")
    p.add_argument("file")
    p.add_argument("--kind", choices=["prompt", "command"], default="prompt")
    p.add_argument("--source", choices=["owner", "user", "untrusted"], default="user")
    p.add_argument("--review-threshold", type=float, default=0.5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("baseline", help="write the integrity baseline of the runtime files")
    p.add_argument("roots", nargs="+", help="files or directories to baseline")
    p.add_argument("--manifest", default=str(paths["manifest"]))
    p.add_argument("--signing-key", default=None, help="Ed25519 private key (raw 32 bytes or PEM)")
    p.set_defaults(handler=cmd_baseline)

    p = sub.add_parser("verify", help="check the runtime files against the baseline")
    p.add_argument("--manifest", default=str(paths["manifest"]))
    p.add_argument("--verify-key", default=None, help="Ed25519 public (or private) key")
    p.add_argument("--policy", choices=["refuse", "degraded"], default="degraded")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("ledger", help="read the quarantine ledger")
    p.add_argument("--path", default=str(paths["ledger"]), help="ledger file (default: %(default)s)")
    p.add_argument("--kind", choices=["prompt", "command"], default=None)
    p.add_argument("--verdict", choices=["allow", "review", "block"], default=None)
    p.add_argument("--session", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--verify", action="store_true", help="check the hash chain")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_ledger)
    result: argparse.ArgumentParser = defender
    return result


def _thresholds(args: argparse.Namespace) -> Any:
    from appliance.defender.policy import Thresholds

    try:
        return Thresholds(review=args.review_threshold, block=args.block_threshold)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from exc


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def cmd_check(args: argparse.Namespace) -> int:
    from appliance.defender.policy import PromptPolicy, decide_prompt
    from appliance.defender.scoring import score_prompt
    from appliance.defender.verdicts import Mode, Source

    source = Source(args.source)
    result = score_prompt(args.text, source)
    decision = decide_prompt(
        result.score, result.reasons, source, PromptPolicy(default=_thresholds(args)), Mode.ENFORCE
    )
    _print({**decision.to_dict(), "flags": list(result.flags)})
    return int(ExitCode.OK)


def cmd_check_command(args: argparse.Namespace) -> int:
    from appliance.defender.policy import CommandPolicy, decide_command
    from appliance.defender.shell_risk import score_command
    from appliance.defender.verdicts import Mode

    result = score_command(args.command, workspace=args.workspace)
    decision = decide_command(args.command, result, CommandPolicy(thresholds=_thresholds(args)), Mode.ENFORCE)
    _print({**decision.to_dict(), "programs": list(result.programs), "parsed": result.parsed})
    return int(ExitCode.OK)


_POSITIVE = frozenset(["injection", "injection-payload", "dangerous", "malicious", "attack"])


def cmd_eval(args: argparse.Namespace) -> int:
    from appliance.defender.scoring import score_prompt
    from appliance.defender.shell_risk import score_command
    from appliance.defender.verdicts import Source

    path = Path(args.file)
    if not path.exists():
        raise NotFound(f"no such file: {path}")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            str(row["text"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed(f"{path}:{number}: expected a JSON object with a 'text' field") from exc
        rows.append(row)
    source = Source(args.source)
    per_label: dict[str, list[int]] = {}
    per_category: dict[str, list[int]] = {}
    latencies: list[float] = []
    for row in rows:
        text = str(row["text"])
        start = time.perf_counter()
        score = score_prompt(text, source).score if args.kind == "prompt" else score_command(text).score
        latencies.append(time.perf_counter() - start)
        flagged = int(score >= args.review_threshold)
        label = str(row.get("label", "unlabelled"))
        per_label.setdefault(label, [0, 0])
        per_label[label][0] += flagged
        per_label[label][1] += 1
        key = f"{label}/{row.get('category', '-')}"
        per_category.setdefault(key, [0, 0])
        per_category[key][0] += flagged
        per_category[key][1] += 1
    latencies.sort()

    def pct(q: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3) if latencies else 0.0
        )

    positives = [v for k, v in per_label.items() if k in _POSITIVE]
    negatives = [v for k, v in per_label.items() if k == "benign"]
    report: dict[str, Any] = {
        "items": len(rows),
        "detection_rate": _rate(positives),
        "false_positive_rate": _rate(negatives),
        "per_label": {k: {"flagged": v[0], "total": v[1]} for k, v in sorted(per_label.items())},
        "per_category": {k: {"flagged": v[0], "total": v[1]} for k, v in sorted(per_category.items())},
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99)},
    }
    if args.json:
        _print(report)
    else:
        sys.stdout.write(
            f"items {report['items']}  detection {report['detection_rate']}  "
            f"false positives {report['false_positive_rate']}  p50 {pct(0.5)} ms  p99 {pct(0.99)} ms\n"
        )
        for key, (flagged, total) in sorted(per_category.items()):
            sys.stdout.write(f"  {key}: {flagged}/{total}\n")
    return int(ExitCode.OK)


def _rate(groups: list[list[int]]) -> float | None:
    total = sum(g[1] for g in groups)
    return round(sum(g[0] for g in groups) / total, 4) if total else None


def cmd_baseline(args: argparse.Namespace) -> int:
    from appliance.defender.integrity import write_baseline

    for root in args.roots:
        if not Path(root).exists():
            raise NotFound(f"no such file or directory: {root}")
    manifest = write_baseline(args.roots, args.manifest, signing_key=args.signing_key)
    signed = "signed" if args.signing_key else "unsigned"
    sys.stdout.write(f"baseline of {len(manifest['files'])} files written to {args.manifest} ({signed})\n")
    return int(ExitCode.OK)


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when intact; with ``--policy refuse`` a mismatch raises (exit 78); with ``degraded`` it prints
    the file list and exits 1."""
    from appliance.defender.integrity import check_baseline, enforce

    report = check_baseline(args.manifest, verify_key=args.verify_key)
    if args.json:
        _print(report.to_dict())
    elif report.ok:
        sys.stdout.write(f"integrity ok ({args.manifest}, signature {report.signature})\n")
    else:
        for label, files in (
            ("changed", report.changed),
            ("missing", report.missing),
            ("added", report.added),
        ):
            for name in files:
                sys.stdout.write(f"{label}: {name}\n")
        sys.stdout.write(f"signature: {report.signature}\n")
    degraded = enforce(report, args.policy)
    return int(ExitCode.FAILURE) if degraded else int(ExitCode.OK)


def cmd_ledger(args: argparse.Namespace) -> int:
    from appliance.defender.ledger import read_entries, verify_chain

    if not Path(args.path).exists() and not list(Path(args.path).parent.glob(Path(args.path).stem + ".*")):
        raise NotFound(f"no ledger at {args.path}")
    if args.verify:
        problems = verify_chain(args.path)
        for problem in problems:
            sys.stdout.write(problem + "\n")
        sys.stdout.write("chain ok\n" if not problems else f"{len(problems)} problem(s)\n")
        return int(ExitCode.OK if not problems else ExitCode.DATAERR)
    entries = [
        e
        for e in read_entries(args.path)
        if (args.kind is None or e.get("kind") == args.kind)
        and (args.verdict is None or args.verdict in (e.get("verdict"), e.get("would_be")))
        and (args.session is None or e.get("session") == args.session)
    ][-args.limit :]
    if args.json:
        _print(entries)
        return int(ExitCode.OK)
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(e.get("ts", 0))))
        rules = ",".join(r.get("rule", "") for r in e.get("reasons", []))
        sys.stdout.write(
            f"{when} {e.get('kind')} {e.get('would_be')}->{e.get('verdict')} "
            f"score={e.get('score')} session={e.get('session', '-')} {rules}\n"
        )
    return int(ExitCode.OK)
