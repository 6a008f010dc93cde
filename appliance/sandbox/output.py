"""Output capping (sans-IO): keep at most ``cap`` bytes of a stream and say whether more came.

The shell feeds chunks as it reads them and stops reading as soon as :attr:`OutputCap.full` is set; the
writer in the container then gets ``EPIPE``/``SIGPIPE``, as with ``cmd | head -c N``.
"""

from __future__ import annotations

__all__ = ["TRUNCATION_MARKER", "OutputCap"]

TRUNCATION_MARKER = b"\n[output truncated by the appliance sandbox]\n"


class OutputCap:
    """Collects up to ``cap`` bytes; ``truncated`` once a byte beyond the cap was offered."""

    __slots__ = ("_buf", "cap", "truncated")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be positive")
        self.cap = cap
        self._buf = bytearray()
        self.truncated = False

    @property
    def full(self) -> bool:
        return self.truncated

    def feed(self, chunk: bytes) -> None:
        room = self.cap - len(self._buf)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self._buf += chunk

    def mark_truncated(self) -> None:
        """The runner dropped output before it reached us (its cap comes first): say so in the value."""
        self.truncated = True

    def value(self, *, marker: bool = True) -> bytes:
        """The kept bytes, with :data:`TRUNCATION_MARKER` appended when truncated and ``marker``."""
        data = bytes(self._buf)
        return data + TRUNCATION_MARKER if self.truncated and marker else data
