"""The defender: prompt-injection and command-risk scoring, verdict policy, quarantine ledger, host
integrity baseline and optional VirusTotal look-ups.

Import cost is kept low: tree-sitter, zstandard, cryptography and httpx load on first use. The trio shell
(:class:`Defender`), the ledger, integrity and VirusTotal live in their own modules and are imported from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.defender.policy import CommandPolicy, PromptPolicy, Thresholds
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

if TYPE_CHECKING:
    from appliance.defender.scoring import score_prompt, wrap_untrusted
    from appliance.defender.shell_risk import score_command

_LAZY = {
    "score_prompt": "appliance.defender.scoring",
    "wrap_untrusted": "appliance.defender.scoring",
    "score_command": "appliance.defender.shell_risk",
}


def __getattr__(name: str) -> Any:
    """Load the rule modules on first use: compiling their patterns costs tens of milliseconds."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


__all__ = [
    "CommandPolicy",
    "CommandScore",
    "Decision",
    "FailMode",
    "Mode",
    "PromptPolicy",
    "PromptScore",
    "Reason",
    "Source",
    "Thresholds",
    "Verdict",
    "score_command",
    "score_prompt",
    "wrap_untrusted",
]
