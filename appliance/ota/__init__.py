"""Over-the-air update: side-by-side slots, health-gated commit, automatic and one-command rollback.

Layout: ``state`` is the sans-IO state machine (switch/trial/rollback decisions, the step plan);
``slots`` owns the on-disk layout and its durable writes (and the fault-injection test switch);
``fetch`` reads sources (file, directory, HTTP with resume); ``snapshot`` copies and restores the
database; ``trial`` runs health checks and service commands; ``history`` keeps the on-disk log;
``updater`` drives them; ``cli`` is the operator's handle. Artifacts are verified by
:mod:`appliance.artifact` only.
"""

from __future__ import annotations

from appliance.ota.cli import add_ota_commands
from appliance.ota.errors import (
    FetchFailed,
    InsufficientSpace,
    NothingToRollBack,
    SelfCheckFailed,
    SlotsCorrupt,
    TrialFailed,
    UpdateBusy,
)
from appliance.ota.state import UPDATE_STEPS, Step

__all__ = [
    "UPDATE_STEPS",
    "FetchFailed",
    "InsufficientSpace",
    "NothingToRollBack",
    "SelfCheckFailed",
    "SlotsCorrupt",
    "Step",
    "TrialFailed",
    "UpdateBusy",
    "add_ota_commands",
]
