"""A tiny sd_notify(3) client: tell systemd we are ready, alive, or stopping. Pure sockets, no deps.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) to ``Type=notify``
services, and ``WATCHDOG_USEC`` (+ ``WATCHDOG_PID``) when ``WatchdogSec=`` is set. Outside systemd every
call is a cheap no-op, so ``serve`` can call these unconditionally. Send errors are swallowed: a missing
notification must never take the gateway down (systemd's watchdog will act if we are really stuck).

Where ``serve`` calls it: ``notifier.ready()`` once the gateway listens, ``notifier.watchdog()`` every
``notifier.watchdog_interval_s`` from a trio task (half the watchdog period), ``notifier.stopping()`` when
SIGTERM arrives, before the graceful shutdown.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier", "notifier_from_env"]


class Notifier:
    """Holds the socket address; one datagram per message, sent with a fresh unconnected socket."""

    __slots__ = ("_address", "watchdog_interval_s")

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        #: how often to send WATCHDOG=1 (half of WatchdogSec), or None when no watchdog is configured
        self.watchdog_interval_s: float | None = watchdog_usec / 2_000_000 if watchdog_usec else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines; True when the datagram went out."""
        if self._address is None:
            return False
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        payload = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, address)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")


def notifier_from_env(environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> Notifier:
    """Read ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID`` (the watchdog applies only to that pid)."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET") or None
    if address is not None and not (address.startswith("/") or address.startswith("@")):
        address = None  # vsock and other transports are not supported
    watchdog: int | None = None
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        wd_pid = int(env.get("WATCHDOG_PID", "0") or "0")
    except ValueError:
        usec, wd_pid = 0, 0
    if usec > 0 and (wd_pid == 0 or wd_pid == (os.getpid() if pid is None else pid)):
        watchdog = usec
    return Notifier(address, watchdog)
