"""OOM-kill detection on cgroup v1 hosts, where the engine's ``OOMKilled`` stays false.

Measured on this class of machine (podman 4.3, runc, cgroupfs, cgroup v1 hybrid): the kernel OOM-kills
inside the container's memcg, yet ``inspect`` says ``OOMKilled: false``, and the memcg is removed at exit
so its ``oom_kill`` counter cannot be read afterwards. So we register our own cgroup-v1 OOM notifier
(``cgroup.event_control`` + an eventfd on ``memory.oom_control``) while the command is still held at the
stdin gate. The kernel signals the eventfd once per OOM and once more when the memcg is removed, so after
the container is gone a count of 2 or more means an OOM kill.
"""

from __future__ import annotations

import contextlib
import os
import time

import trio

__all__ = ["OomWatch"]

_MEMCG_ROOT = "/sys/fs/cgroup/memory"


class OomWatch:
    """One run's OOM notifier; all methods are best effort and never raise."""

    __slots__ = ("_efd",)

    def __init__(self) -> None:
        self._efd: int | None = None

    @staticmethod
    def supported() -> bool:
        return os.path.isfile(os.path.join(_MEMCG_ROOT, "cgroup.event_control"))

    def arm(self, pid: int) -> bool:
        """Register on the memcg of ``pid`` (the container's init). False when not possible."""
        try:
            with open(f"/proc/{pid}/cgroup", encoding="ascii") as f:
                lines = f.read().splitlines()
            path = next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory")
            cg = os.path.join(_MEMCG_ROOT, path.lstrip("/"))
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            ocfd = os.open(os.path.join(cg, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                ecfd = os.open(os.path.join(cg, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(ecfd, f"{efd} {ocfd}".encode())
                finally:
                    os.close(ecfd)
            finally:
                os.close(ocfd)
        except (OSError, StopIteration, IndexError):
            with contextlib.suppress(UnboundLocalError, OSError):
                os.close(efd)
            return False
        self._efd = efd
        return True

    async def oom_killed(self, *, sigkilled: bool, settle_s: float = 2.0) -> bool:
        """Call after the container was removed: True when the kernel reported an OOM in its memcg.

        Only a SIGKILLed run (exit 137) waits up to ``settle_s`` for the removal signal to arrive;
        any other run reads the counter once.
        """
        if self._efd is None:
            return False
        count = 0
        deadline = time.monotonic() + settle_s
        while True:
            with contextlib.suppress(BlockingIOError):
                count += os.eventfd_read(self._efd)
            if count >= 2 or not sigkilled or time.monotonic() > deadline:
                return count >= 2
            await trio.sleep(0.005)

    def close(self) -> None:
        if self._efd is not None:
            os.close(self._efd)
            self._efd = None
