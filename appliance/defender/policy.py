"""Verdict policy (sans-IO): thresholds per source, deny patterns and allow prefixes for commands, modes.

Rules:
- ``block`` when a hard rule fired or the score reaches the block threshold; ``review`` from the review
  threshold; otherwise ``allow``.
- Deny patterns win over everything; allow prefixes win over scores but never over a hard rule, and only when
  the command parsed completely, has no substitution or expansion, and *every* segment of the chain matches a
  prefix (Claude Code's and OpenClaw's rule: ``safe && other`` is not safe).
- Interpreters and shells are never matched by an allow prefix unless the prefix names a script operand
  explicitly (``python scripts/report.py``), as OpenClaw's safe-bins rule says.
- ``audit_only`` keeps the computed verdict in ``would_be`` and allows.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

import attrs

from appliance.defender.verdicts import CommandScore, Decision, FailMode, Mode, Reason, Source, Verdict

__all__ = [
    "CommandPolicy",
    "PromptPolicy",
    "Thresholds",
    "apply_mode",
    "decide_command",
    "decide_prompt",
    "fail_decision",
    "verdict_for",
]


def _check_order(instance: Thresholds, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value}")
    if attribute.name == "block" and value < instance.review:
        raise ValueError("block threshold must not be below the review threshold")


@attrs.frozen
class Thresholds:
    """Score cut-offs. Defaults match ``DefenderSettings`` (review 0.5, block 0.8)."""

    review: float = attrs.field(default=0.5, validator=_check_order)
    block: float = attrs.field(default=0.8, validator=_check_order)


def verdict_for(score: float, *, hard: bool, thresholds: Thresholds) -> Verdict:
    if hard or score >= thresholds.block:
        return Verdict.BLOCK
    if score >= thresholds.review:
        return Verdict.REVIEW
    return Verdict.ALLOW


@attrs.frozen
class PromptPolicy:
    """Thresholds per source; sources without an entry use ``default``."""

    default: Thresholds = Thresholds()
    per_source: Mapping[Source, Thresholds] = attrs.field(factory=dict)

    def thresholds(self, source: Source) -> Thresholds:
        return self.per_source.get(source, self.default)


_NEVER_PREFIX_ALLOWED = frozenset(
    [
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "fish",
        "python",
        "python3",
        "perl",
        "ruby",
        "node",
        "php",
        "lua",
        "eval",
        "exec",
        "env",
        "sudo",
        "su",
        "doas",
        "xargs",
        "find",
        "awk",
        "gawk",
        "busybox",
    ]
)


@attrs.frozen
class CommandPolicy:
    """Explicit deny patterns (shell-style globs over a segment's argv joined by spaces, or over the whole
    command) and allow prefixes per group (whole-word prefixes of a segment's argv, e.g. ``"git status"``;
    a prefix ending in ``/`` also matches longer paths)."""

    thresholds: Thresholds = Thresholds()
    deny: tuple[str, ...] = ()
    allow_prefixes: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)

    def denied(self, command: str, argvs: tuple[tuple[str, ...], ...]) -> str | None:
        flat = " ".join(command.split())
        for pattern in self.deny:
            if fnmatch.fnmatchcase(flat, pattern):
                return pattern
            for argv in argvs:
                if fnmatch.fnmatchcase(" ".join(argv), pattern):
                    return pattern
        return None

    def allowed(self, group: str, score: CommandScore) -> bool:
        prefixes = self.allow_prefixes.get(group, ())
        if not prefixes or not score.parsed or score.dynamic or score.hard or not score.argvs:
            return False
        normalised = [" ".join(p.split()) for p in prefixes if p.strip()]
        for argv in score.argvs:
            joined = " ".join(argv)
            name = argv[0].rsplit("/", 1)[-1]
            ok = False
            for prefix in normalised:
                if not (
                    joined == prefix
                    or joined.startswith(prefix + " ")
                    or (prefix.endswith("/") and joined.startswith(prefix))
                ):
                    continue
                if name in _NEVER_PREFIX_ALLOWED and " " not in prefix:
                    continue  # a bare interpreter or wrapper is never allowed by prefix
                ok = True
                break
            if not ok:
                return False
        return True


def apply_mode(
    kind: str,
    verdict: Verdict,
    score: float,
    reasons: tuple[Reason, ...],
    mode: Mode,
    *,
    content_sha256: str = "",
    timed_out: bool = False,
) -> Decision:
    """Turn a rules verdict into the decision the caller enforces."""
    enforced = Verdict.ALLOW if mode is not Mode.ENFORCE else verdict
    return Decision(
        kind=kind,
        verdict=enforced,
        would_be=verdict,
        score=score,
        reasons=reasons,
        mode=mode,
        timed_out=timed_out,
        content_sha256=content_sha256,
    )


def decide_prompt(
    score: float,
    reasons: tuple[Reason, ...],
    source: Source,
    policy: PromptPolicy,
    mode: Mode,
    *,
    content_sha256: str = "",
) -> Decision:
    verdict = verdict_for(score, hard=False, thresholds=policy.thresholds(source))
    return apply_mode("prompt", verdict, score, reasons, mode, content_sha256=content_sha256)


def decide_command(
    command: str,
    result: CommandScore,
    policy: CommandPolicy,
    mode: Mode,
    *,
    group: str = "default",
    content_sha256: str = "",
) -> Decision:
    reasons = result.reasons
    denied = policy.denied(command, result.argvs)
    if denied is not None:
        verdict = Verdict.BLOCK
        reasons = (*reasons, Reason("policy.deny", "policy", 1.0, denied))
    elif policy.allowed(group, result):
        verdict = Verdict.ALLOW
        reasons = (*reasons, Reason("policy.allow_prefix", "policy", 0.0, group))
    else:
        verdict = verdict_for(result.score, hard=result.hard, thresholds=policy.thresholds)
    return apply_mode("command", verdict, result.score, reasons, mode, content_sha256=content_sha256)


def fail_decision(
    kind: str, fail_mode: FailMode, mode: Mode, *, content_sha256: str = "", reason: str = "timeout"
) -> Decision:
    """The decision when scoring did not finish: the configured fail mode (default review)."""
    verdict = Verdict(fail_mode.value)
    reasons = (Reason(f"engine.{reason}", "engine", 0.0),)
    return apply_mode(kind, verdict, 0.0, reasons, mode, content_sha256=content_sha256, timed_out=True)
