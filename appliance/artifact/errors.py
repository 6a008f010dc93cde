"""Why an artifact, key or signature is refused. Subclasses of our one hierarchy (``appliance.errors``).

::

    InvalidRequest (exit 65)
    └── ArtifactRejected        .reason: a RejectReason, stable for scripts and logs
        ├── BadKey              a key file cannot be parsed
        ├── BadPassphrase       wrong passphrase or corrupt secret key (exit 77)
        └── BadSignature        not signed by a trusted key, or the bytes changed
"""

from __future__ import annotations

import enum
from typing import Any

from appliance.errors import ExitCode, InvalidRequest

__all__ = ["ArtifactRejected", "BadKey", "BadPassphrase", "BadSignature", "RejectReason"]


class RejectReason(enum.StrEnum):
    BAD_KEY = "bad_key"
    BAD_PASSPHRASE = "bad_passphrase"
    BAD_SIGNATURE = "bad_signature"
    UNTRUSTED_KEY = "untrusted_key"
    BAD_MANIFEST = "bad_manifest"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    DOWNGRADE = "downgrade"
    TOO_OLD_TO_UPDATE = "too_old_to_update"
    WRONG_ARCH = "wrong_arch"
    ARCHIVE_MISMATCH = "archive_mismatch"
    FILE_MISMATCH = "file_mismatch"
    BAD_ROTATION = "bad_rotation"


class ArtifactRejected(InvalidRequest):
    """The artifact must not be installed; ``reason`` says which check failed."""

    default_reason = RejectReason.BAD_MANIFEST

    def __init__(
        self, message: str, *, reason: RejectReason | None = None, details: dict[str, Any] | None = None
    ) -> None:
        self.reason = reason or self.default_reason
        super().__init__(message, details={"reason": str(self.reason), **(details or {})})


class BadKey(ArtifactRejected):
    default_reason = RejectReason.BAD_KEY


class BadPassphrase(ArtifactRejected):
    default_reason = RejectReason.BAD_PASSPHRASE
    exit_code = ExitCode.NOPERM


class BadSignature(ArtifactRejected):
    default_reason = RejectReason.BAD_SIGNATURE
