"""The warm pool: one started-then-paused runner per (group, network mode), waiting at its gate.

Why: a cold run pays create + start + the runner's start-up before the command can begin; a pooled
container has paid all of that and only needs its mounts re-verified, an unpause and the request frame.

Rules:
- A slot is staged with the full :class:`~appliance.sandbox.policy.RunSpec` of the run that asked for it
  (mounts, limits, image, egress list); a later run takes it only when its own spec shapes the container
  the same way (everything but argv and env, which travel in the request). A stale slot (the policy
  now gives other mounts, a new image was built, ...) is removed and the run goes cold.
- Once a run ends, a replacement for its key is staged in the background (not during the run: the
  engine serialises container operations, so staging alongside a run would slow that run down).
- At most ``max_slots`` slots; the oldest is removed first. Slots are labelled ``appliance.pool=1`` and
  carry our pid as owner, so a crash leaves nothing the next start's orphan sweep misses.
- :meth:`WarmPool.aclose` removes every slot; staging in flight is cancelled and cleans up after itself.
"""

from __future__ import annotations

import attrs
import trio

from appliance.errors import ApplianceError
from appliance.log import get_logger
from appliance.sandbox.backend import (
    POOL_LABEL,
    Engine,
    Staged,
    discard_staged,
    stage_container,
)
from appliance.sandbox.policy import RunSpec

__all__ = ["WarmPool", "pool_key", "same_shape"]

log = get_logger("appliance.sandbox.pool")

PoolKey = tuple[str, str]


def pool_key(spec: RunSpec) -> PoolKey:
    return spec.group, str(spec.network)


def same_shape(staged: RunSpec, wanted: RunSpec) -> bool:
    """True when a container staged for ``staged`` can run ``wanted`` (only argv and env differ)."""
    return attrs.evolve(staged, argv=("-",), env=()) == attrs.evolve(wanted, argv=("-",), env=())


class WarmPool:
    """Slots of staged, paused runners; all methods are safe to call from any task of ``nursery``."""

    def __init__(
        self, engine: Engine, runtime_dir: str, nursery: trio.Nursery, *, max_slots: int = 4
    ) -> None:
        self._engine = engine
        self._runtime_dir = runtime_dir
        self._nursery = nursery
        self._max_slots = max_slots
        self._slots: dict[PoolKey, Staged] = {}
        self._pending: dict[PoolKey, trio.Event] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._slots)

    def take(self, spec: RunSpec) -> Staged | None:
        """The slot for ``spec`` if one is ready and fits, else None (a stale slot is removed)."""
        staged = self._slots.pop(pool_key(spec), None)
        if staged is None:
            return None
        if not same_shape(staged.spec, spec):
            log.info("sandbox_pool_slot_stale", group=spec.group, network=str(spec.network))
            self._nursery.start_soon(discard_staged, self._engine, staged)
            return None
        return staged

    def refill(self, spec: RunSpec) -> None:
        """Stage a slot for ``spec``'s key in the background unless one is ready or on its way."""
        key = pool_key(spec)
        if self._closed or key in self._slots or key in self._pending:
            return
        self._pending[key] = trio.Event()
        self._nursery.start_soon(self._stage, key, spec, name=f"sandbox-pool-{key[0]}")

    async def wait_ready(self, spec: RunSpec) -> bool:
        """Wait for staging in flight for ``spec``'s key; True when a slot is ready (tests, bench)."""
        key = pool_key(spec)
        event = self._pending.get(key)
        if event is not None:
            await event.wait()
        return key in self._slots

    async def _stage(self, key: PoolKey, spec: RunSpec) -> None:
        try:
            try:
                staged = await stage_container(
                    self._engine, spec, self._runtime_dir, park=True, labels={POOL_LABEL: "1"}
                )
            except ApplianceError as exc:
                log.warning("sandbox_pool_stage_failed", group=key[0], network=key[1], reason=exc.one_line())
                return
            if self._closed:
                await discard_staged(self._engine, staged)
                return
            self._slots[key] = staged
            log.info("sandbox_pool_slot_ready", group=key[0], network=key[1], container=staged.cid[:12])
            while len(self._slots) > self._max_slots:
                oldest = min(self._slots, key=lambda k: self._slots[k].staged_at)
                await discard_staged(self._engine, self._slots.pop(oldest))
        finally:
            self._pending.pop(key).set()

    async def aclose(self) -> None:
        """Remove every slot (shielded: runs during shutdown)."""
        self._closed = True
        with trio.CancelScope(shield=True):
            while self._slots:
                _, staged = self._slots.popitem()
                await discard_staged(self._engine, staged)
