"""Value objects the defender hands out: verdicts, reasons, scores and decisions.

Rules: frozen attrs classes, no behaviour beyond small derived properties, JSON-safe via :meth:`to_dict`.
Wire strings are StrEnums. Nothing here imports trio, httpx or tree-sitter.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = [
    "CommandScore",
    "Decision",
    "FailMode",
    "Mode",
    "PromptScore",
    "Reason",
    "Source",
    "Verdict",
]


class Verdict(enum.StrEnum):
    """What the caller must do with the message or command."""

    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        """Severity order, so verdicts combine with ``max``."""
        return _RANK[self]


_RANK = {Verdict.ALLOW: 0, Verdict.REVIEW: 1, Verdict.BLOCK: 2}


class Mode(enum.StrEnum):
    """``enforce`` applies verdicts; ``audit_only`` records them and allows; ``off`` skips scoring."""

    ENFORCE = "enforce"
    AUDIT_ONLY = "audit_only"
    OFF = "off"


class FailMode(enum.StrEnum):
    """The verdict used when an evaluation times out or crashes (default: review)."""

    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"


class Source(enum.StrEnum):
    """Who wrote the text. Tool, web, email and file content is untrusted and scored strictly."""

    OWNER = "owner"
    USER = "user"
    UNTRUSTED = "untrusted"


@attrs.frozen
class Reason:
    """One rule that fired: a stable id, its category, its weight and a short excerpt of the match."""

    rule: str
    category: str
    weight: float
    excerpt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "category": self.category, "weight": self.weight, "excerpt": self.excerpt}


@attrs.frozen
class PromptScore:
    """Result of the prompt-injection rules tier: a score in [0, 1] and why."""

    score: float
    reasons: tuple[Reason, ...] = ()
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "reasons": [r.to_dict() for r in self.reasons],
            "flags": list(self.flags),
        }


@attrs.frozen
class CommandScore:
    """Result of command-risk scoring. ``hard`` is set when a deny rule fired: block whatever the score."""

    score: float
    reasons: tuple[Reason, ...] = ()
    hard: bool = False
    programs: tuple[str, ...] = ()
    parsed: bool = True
    argvs: tuple[tuple[str, ...], ...] = ()
    dynamic: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "hard": self.hard,
            "parsed": self.parsed,
            "programs": list(self.programs),
            "reasons": [r.to_dict() for r in self.reasons],
        }


@attrs.frozen
class Decision:
    """What the defender decided. ``verdict`` is what the caller enforces; ``would_be`` is the rules'
    verdict before audit-only mode or a fail mode changed it."""

    kind: str
    verdict: Verdict
    would_be: Verdict
    score: float
    reasons: tuple[Reason, ...] = ()
    mode: Mode = Mode.ENFORCE
    timed_out: bool = False
    content_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "verdict": str(self.verdict),
            "would_be": str(self.would_be),
            "score": round(self.score, 4),
            "mode": str(self.mode),
            "timed_out": self.timed_out,
            "content_sha256": self.content_sha256,
            "reasons": [r.to_dict() for r in self.reasons],
        }
