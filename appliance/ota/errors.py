"""Why an update, commit or rollback stopped. Subclasses of our one hierarchy (``appliance.errors``).

Verification failures are the artifact component's own :class:`~appliance.artifact.ArtifactRejected`
(exit 65) and pass through unchanged. Exit codes are documented in ``runbooks/update-and-rollback.md``::

    ApplianceError
    ├── InvalidRequest (65)
    │   └── SelfCheckFailed     the new slot's own self-check failed; nothing was switched
    ├── NotFound (66)
    │   └── NothingToRollBack   no previous slot (never updated on this root)
    ├── Unavailable (69, retryable)
    │   ├── FetchFailed         the update source cannot be read (network, missing file)
    │   └── UpdateBusy          another update/rollback holds the lock (exit 75)
    ├── StoreError (74)
    │   ├── InsufficientSpace   free disk < new slot + snapshot (details.needed_bytes)
    │   └── SlotsCorrupt        the appliance root is not in a state we can reason about
    └── TrialFailed (1)         the new version failed its health check; we reverted to the previous slot
"""

from __future__ import annotations

from appliance.errors import ApplianceError, ExitCode, InvalidRequest, NotFound, StoreError, Unavailable

__all__ = [
    "FetchFailed",
    "InsufficientSpace",
    "NothingToRollBack",
    "SelfCheckFailed",
    "SlotsCorrupt",
    "TrialFailed",
    "UpdateBusy",
]


class SelfCheckFailed(InvalidRequest):
    """The unpacked version did not pass its own self-check, so it never became current."""


class NothingToRollBack(NotFound):
    """There is no previous slot to go back to."""


class FetchFailed(Unavailable):
    """The update source could not be read; a retry (with resume) may help."""


class UpdateBusy(Unavailable):
    exit_code = ExitCode.TEMPFAIL


class InsufficientSpace(StoreError):
    """Not enough free disk for the new slot plus the database snapshot."""


class SlotsCorrupt(StoreError):
    """The slot layout on disk contradicts itself (e.g. ``current`` points nowhere)."""


class TrialFailed(ApplianceError):
    """The new version did not pass its health check in time; the previous slot is current again."""

    exit_code = ExitCode.FAILURE
