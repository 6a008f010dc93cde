"""The one exception hierarchy of the appliance.

Every error that can reach a peer or an operator is an :class:`ApplianceError`. Each class carries the
wire ``code`` (OpenClaw's closed set), the CLI ``exit_code`` (BSD sysexits) and whether a retry may help.
Instances carry a one-line ``message`` and JSON-safe ``details``. This module imports nothing of ours.

::

    ApplianceError
    ├── InvalidRequest          INVALID_REQUEST  exit 65
    │   ├── BadFrame            malformed / oversized / out-of-order frame
    │   ├── UnknownMethod       "unknown method: X"
    │   ├── ValidationFailed    params failed validation (details carry the field errors)
    │   └── AuthFailed          wrong / missing token (OpenClaw answers INVALID_REQUEST + details.code)
    ├── Forbidden               FORBIDDEN        exit 77
    │   ├── MissingScope
    │   └── DefenderBlocked
    ├── NotPaired               NOT_PAIRED       exit 77
    ├── NotLinked               NOT_LINKED       exit 77
    ├── Unavailable             UNAVAILABLE      exit 69   retryable
    │   ├── QueueFull           (retry_after_ms)
    │   ├── SandboxUnavailable
    │   ├── ProviderUnavailable
    │   └── StoreBusy
    ├── AgentTimeout            AGENT_TIMEOUT    exit 75   retryable
    ├── NotFound                INVALID_REQUEST  exit 66   (a named thing does not exist)
    ├── StoreError              UNAVAILABLE      exit 74   (database cannot be opened / migrated)
    └── ConfigError             (startup only)   exit 78

    ProtocolError (gateway core, h11 style, never leaves the gateway)
    ├── LocalProtocolError      our bug
    └── RemoteProtocolError     the peer's fault; carries the error to answer with
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

__all__ = [
    "AgentTimeout",
    "ApplianceError",
    "AuthFailed",
    "BadFrame",
    "ConfigError",
    "DefenderBlocked",
    "ErrorCode",
    "ExitCode",
    "Forbidden",
    "InvalidRequest",
    "LocalProtocolError",
    "MissingScope",
    "NotFound",
    "NotLinked",
    "NotPaired",
    "ProtocolError",
    "ProviderUnavailable",
    "QueueFull",
    "RemoteProtocolError",
    "SandboxUnavailable",
    "StoreBusy",
    "StoreError",
    "Unavailable",
    "UnknownMethod",
    "ValidationFailed",
]


class ErrorCode(enum.StrEnum):
    """OpenClaw's closed set of top-level error codes."""

    INVALID_REQUEST = "INVALID_REQUEST"
    FORBIDDEN = "FORBIDDEN"
    UNAVAILABLE = "UNAVAILABLE"
    NOT_PAIRED = "NOT_PAIRED"
    NOT_LINKED = "NOT_LINKED"
    AGENT_TIMEOUT = "AGENT_TIMEOUT"
    APPROVAL_NOT_FOUND = "APPROVAL_NOT_FOUND"


class ExitCode(enum.IntEnum):
    """CLI exit codes: BSD sysexits, 2 for usage as argparse does."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    DATAERR = 65
    NOINPUT = 66
    UNAVAILABLE = 69
    SOFTWARE = 70
    IOERR = 74
    TEMPFAIL = 75
    NOPERM = 77
    CONFIG = 78


class ApplianceError(Exception):
    """Base of every error we raise on purpose."""

    code: ClassVar[ErrorCode] = ErrorCode.UNAVAILABLE
    exit_code: ClassVar[ExitCode] = ExitCode.SOFTWARE
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] | None = details
        self.retry_after_ms = retry_after_ms

    def to_wire(self) -> dict[str, Any]:
        """The ``error`` object of a ``res`` frame, shaped as OpenClaw's frame guards accept it."""
        error: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        if self.retryable:
            error["retryable"] = True
        if self.retry_after_ms is not None:
            error["retryAfterMs"] = max(0, int(self.retry_after_ms))
        return error

    def one_line(self) -> str:
        """What the CLI prints: one line, no traceback."""
        return " ".join(self.message.split())


class InvalidRequest(ApplianceError):
    code = ErrorCode.INVALID_REQUEST
    exit_code = ExitCode.DATAERR


class BadFrame(InvalidRequest):
    """The peer sent bytes that are not a valid frame."""


class UnknownMethod(InvalidRequest):
    def __init__(self, method: str) -> None:
        super().__init__(f"unknown method: {method}")
        self.method = method


class ValidationFailed(InvalidRequest):
    """Params did not validate; ``details`` lists the offending fields."""


class AuthFailed(InvalidRequest):
    """Wrong or missing credentials. OpenClaw answers these as INVALID_REQUEST with ``details.code``."""

    exit_code = ExitCode.NOPERM


class NotFound(InvalidRequest):
    exit_code = ExitCode.NOINPUT


class Forbidden(ApplianceError):
    code = ErrorCode.FORBIDDEN
    exit_code = ExitCode.NOPERM


class MissingScope(Forbidden):
    def __init__(self, scope: str, required: list[str]) -> None:
        super().__init__(
            f"missing scope: {scope}",
            details={"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": required},
        )


class DefenderBlocked(Forbidden):
    """The defender refused a message or command."""


class NotPaired(ApplianceError):
    code = ErrorCode.NOT_PAIRED
    exit_code = ExitCode.NOPERM


class NotLinked(ApplianceError):
    code = ErrorCode.NOT_LINKED
    exit_code = ExitCode.NOPERM


class Unavailable(ApplianceError):
    code = ErrorCode.UNAVAILABLE
    exit_code = ExitCode.UNAVAILABLE
    retryable = True


class QueueFull(Unavailable):
    def __init__(self, message: str, *, retry_after_ms: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details, retry_after_ms=retry_after_ms)


class SandboxUnavailable(Unavailable):
    pass


class ProviderUnavailable(Unavailable):
    pass


class StoreBusy(Unavailable):
    exit_code = ExitCode.TEMPFAIL


class StoreError(ApplianceError):
    """The database cannot be opened, checked or migrated."""

    code = ErrorCode.UNAVAILABLE
    exit_code = ExitCode.IOERR


class AgentTimeout(ApplianceError):
    code = ErrorCode.AGENT_TIMEOUT
    exit_code = ExitCode.TEMPFAIL
    retryable = True


class ConfigError(ApplianceError):
    """Bad configuration at start-up: file, key and what was expected, in one line."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.key = key


class ProtocolError(Exception):
    """A gateway protocol violation (sans-IO core). Never crosses the gateway boundary."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol forbids: our bug."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. ``reply`` is the error to answer with, ``close_code`` set when the
    connection must close afterwards."""

    def __init__(
        self, reply: ApplianceError, *, request_id: str | None = None, close_code: int | None = None
    ):
        super().__init__(reply.message)
        self.reply = reply
        self.request_id = request_id
        self.close_code = close_code
