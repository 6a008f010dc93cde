"""Liveness watchdog: cancel and restart a channel that stopped showing signs of life.

Rules:
- the adapter calls :meth:`Heartbeat.beat` on every sign of life (a long poll answered, a frame or a
  pong received); the adapter is built with ``on_alive=heartbeat.beat``;
- when no beat came for ``stall_after_s``, the run is cancelled (``channel_stalled``) and restarted after
  a capped, jittered backoff; the backoff resets once a restarted run beats again;
- a run that raises a retryable error (:class:`~appliance.errors.Unavailable`, ``OSError``) is restarted
  the same way; a non-retryable :class:`~appliance.errors.ApplianceError` (a rejected token) is raised:
  restarting cannot fix it;
- a run that returns (bounded mode, ``max_messages`` reached) ends supervision with its result;
- the same adapter object is restarted, so state it keeps across connections (WhatsApp's outbound
  buffer) survives the restart.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import trio

from appliance.channels.backoff import Backoff
from appliance.errors import ApplianceError
from appliance.log import get_logger

__all__ = ["Heartbeat", "supervise_channel"]

log = get_logger("appliance.channels.watchdog")


class Heartbeat:
    def __init__(self) -> None:
        self.last = trio.current_time()
        self.beats = 0

    def beat(self) -> None:
        self.last = trio.current_time()
        self.beats += 1


async def supervise_channel(
    name: str,
    run: Callable[[], Awaitable[int]],
    heartbeat: Heartbeat,
    *,
    stall_after_s: float,
    restart_base_s: float = 1.0,
    restart_cap_s: float = 300.0,
    rand: Callable[[], float] = random.random,
    max_restarts: int | None = None,
) -> int:
    """Run ``run()`` under the watchdog; returns its result when it returns. ``max_restarts`` (tests,
    bounded checks) re-raises the last failure once exceeded."""
    backoff = Backoff(restart_base_s, restart_cap_s, 0.5, rand)
    restarts = 0
    while True:
        heartbeat.last = trio.current_time()
        beats_at_start = heartbeat.beats
        stalled = False
        result: int | None = None
        failure: BaseException | None = None
        fatal: ApplianceError | None = None
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal stalled
                while True:
                    deadline = heartbeat.last + stall_after_s
                    if trio.current_time() >= deadline:
                        stalled = True
                        log.warning(
                            "channel_stalled",
                            channel=name,
                            silent_s=round(trio.current_time() - heartbeat.last, 3),
                        )
                        nursery.cancel_scope.cancel()
                        return
                    await trio.sleep_until(deadline)

            async def serve() -> None:
                nonlocal result, failure, fatal
                try:
                    result = await run()
                except ApplianceError as exc:
                    if exc.retryable:
                        failure = exc
                    else:
                        fatal = exc
                except OSError as exc:
                    failure = exc
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(serve)
        if fatal is not None:
            raise fatal
        if result is not None:
            return result
        if heartbeat.beats > beats_at_start:
            backoff.reset()
        restarts += 1
        if max_restarts is not None and restarts > max_restarts:
            if failure is not None:
                raise failure
            raise trio.TooSlowError(f"channel {name} stalled {restarts} times")
        delay = backoff.next_delay()
        log.warning(
            "channel_restarting",
            channel=name,
            reason="stalled" if stalled else f"{type(failure).__name__}: {failure}",
            restart=restarts,
            retry_in_s=round(delay, 3),
        )
        await trio.sleep(delay)
