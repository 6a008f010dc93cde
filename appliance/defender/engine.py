"""The defender's trio shell: bounded, time-limited evaluation, modes, fail mode, ledger and logs.

Rules:
- Every evaluation holds one token of a ``trio.CapacityLimiter`` and runs under ``trio.move_on_after``; if it
  cannot finish in time (including waiting for a token), the configured fail mode decides (default review).
  The defender can therefore never build a backlog: callers wait at most ``timeout_s``.
- Short inputs are scored inline (a thread hop costs more than the rules); long ones, and every command, go to
  a worker thread, abandoned on timeout but still holding their limiter token until they finish, so the number
  of busy threads stays bounded.
- Blocks and reviews (also the would-be ones in audit-only mode) are appended to the quarantine ledger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import trio

from appliance.defender.policy import (
    CommandPolicy,
    PromptPolicy,
    apply_mode,
    decide_command,
    decide_prompt,
    fail_decision,
)
from appliance.defender.verdicts import (
    CommandScore,
    Decision,
    FailMode,
    Mode,
    PromptScore,
    Reason,
    Source,
    Verdict,
)
from appliance.log import get_logger

__all__ = ["Defender"]

log = get_logger("appliance.defender")

PromptScorer = Callable[[str, Source], PromptScore]
CommandScorer = Callable[[str], CommandScore]
LedgerSink = Callable[[dict[str, Any]], object]


def _default_prompt_scorer(text: str, source: Source) -> PromptScore:
    from appliance.defender.scoring import score_prompt

    return score_prompt(text, source)


def _default_command_scorer(command: str) -> CommandScore:
    from appliance.defender.shell_risk import score_command

    return score_command(command)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Defender:
    """Scores prompts and commands under a capacity limit and a timeout, and applies the policy."""

    def __init__(
        self,
        *,
        mode: Mode = Mode.ENFORCE,
        fail_mode: FailMode = FailMode.REVIEW,
        prompt_policy: PromptPolicy | None = None,
        command_policy: CommandPolicy | None = None,
        max_concurrency: int = 4,
        timeout_s: float = 0.5,
        inline_max_chars: int = 2048,
        ledger: LedgerSink | None = None,
        prompt_scorer: PromptScorer | None = None,
        command_scorer: CommandScorer | None = None,
    ) -> None:
        self.mode = mode
        self.fail_mode = fail_mode
        self.prompt_policy = prompt_policy or PromptPolicy()
        self.command_policy = command_policy or CommandPolicy()
        self.limiter = trio.CapacityLimiter(max_concurrency)
        self.timeout_s = timeout_s
        self.inline_max_chars = inline_max_chars
        self._ledger = ledger
        self._prompt_scorer = prompt_scorer or _default_prompt_scorer
        self._command_scorer = command_scorer or _default_command_scorer
        self.degraded = False

    def set_degraded(self, degraded: bool, *, files: Iterable[str] = ()) -> None:
        """Integrity policy ``degraded``: while set, every command is blocked (audit-only still only logs)."""
        if degraded != self.degraded:
            log.warning("defender_degraded" if degraded else "defender_restored", files=list(files)[:20])
        self.degraded = degraded

    async def check_prompt(
        self,
        text: str,
        *,
        source: Source = Source.USER,
        session: str | None = None,
        inline: bool | None = None,
    ) -> Decision:
        """Score one inbound text. Never raises for content; a timeout yields the fail-mode decision."""
        digest = _sha256(text)
        if self.mode is Mode.OFF:
            return decide_prompt(0.0, (), source, self.prompt_policy, Mode.OFF, content_sha256=digest)
        run_inline = len(text) <= self.inline_max_chars if inline is None else inline
        result = await self._run(lambda: self._prompt_scorer(text, source), run_inline)
        if result is None:
            decision = fail_decision("prompt", self.fail_mode, self.mode, content_sha256=digest)
        else:
            assert isinstance(result, PromptScore)
            decision = decide_prompt(
                result.score, result.reasons, source, self.prompt_policy, self.mode, content_sha256=digest
            )
        await self._record(decision, {"source": str(source), "session": session})
        return decision

    async def check_command(
        self, command: str, *, group: str = "default", session: str | None = None, inline: bool = False
    ) -> Decision:
        """Score one command an agent wants to run, with the policy of ``group``."""
        digest = _sha256(command)
        if self.mode is Mode.OFF:
            return fail_decision("command", FailMode.ALLOW, Mode.OFF, content_sha256=digest, reason="off")
        if self.degraded:
            reason = Reason("integrity.degraded", "integrity", 1.0, "runtime files differ from the baseline")
            decision = apply_mode("command", Verdict.BLOCK, 1.0, (reason,), self.mode, content_sha256=digest)
            await self._record(decision, {"group": group, "session": session})
            return decision
        result = await self._run(lambda: self._command_scorer(command), inline)
        if result is None:
            decision = fail_decision("command", self.fail_mode, self.mode, content_sha256=digest)
        else:
            assert isinstance(result, CommandScore)
            decision = decide_command(
                command, result, self.command_policy, self.mode, group=group, content_sha256=digest
            )
        await self._record(decision, {"group": group, "session": session})
        return decision

    async def _run(
        self, work: Callable[[], PromptScore | CommandScore], inline: bool
    ) -> PromptScore | CommandScore | None:
        with trio.move_on_after(self.timeout_s):
            if inline:
                async with self.limiter:
                    return work()
            return await trio.to_thread.run_sync(work, limiter=self.limiter, abandon_on_cancel=True)
        return None

    async def _record(self, decision: Decision, context: dict[str, Any]) -> None:
        if decision.timed_out:
            log.warning(
                "defender_timed_out",
                kind=decision.kind,
                verdict=str(decision.verdict),
                timeout_s=self.timeout_s,
                **context,
            )
        if decision.would_be is Verdict.ALLOW:
            return
        event = "verdict_blocked" if decision.would_be is Verdict.BLOCK else "verdict_review"
        if decision.mode is Mode.AUDIT_ONLY:
            event = f"audit_{event}"
        rules = [r.rule for r in decision.reasons]
        log.info(
            event,
            kind=decision.kind,
            score=round(decision.score, 3),
            rules=rules,
            mode=str(decision.mode),
            **context,
        )
        if self._ledger is not None:
            entry = {**decision.to_dict(), **{k: v for k, v in context.items() if v is not None}}
            try:
                await trio.to_thread.run_sync(self._ledger, entry)
            except OSError as exc:
                log.error("ledger_write_failed", error=str(exc))  # noqa: TRY400 - a full disk is not a bug

    @staticmethod
    def combine(decisions: Iterable[Decision]) -> Verdict:
        """The strictest enforced verdict of several decisions."""
        return max((d.verdict for d in decisions), key=lambda v: v.rank, default=Verdict.ALLOW)
