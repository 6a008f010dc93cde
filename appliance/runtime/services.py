"""The work services behind the gateway: run queue, agent runtime and scheduler, started when needed.

Rules:
- ``serve`` creates one :class:`Services` with its nursery. It starts them at boot when the database holds
  work a crash or a schedule left (queued items, turns marked running, active tasks), so recovery and
  schedules never wait for a client. Otherwise they start on the first ``chat.*``/``agent``/``cron.*``
  call: an idle board does not pay their memory (~2 MB of the 35 MB idle budget) until it is used.
- One queue serves both: an interactive turn holds its session's lane through the agent's
  :class:`~appliance.agent.gate.QueueTurnGate`; a scheduled task's item starts a turn and frees the lane
  (the turn then waits for the lane like any message), so a session's runs keep one order.
- With a sandbox engine configured, one :class:`~appliance.sandbox.service.SandboxService` lives as long
  as the services: the agent's ``exec`` runs through it (one engine connection, opened on the first
  exec; the warm pool when ``sandbox.warm_pool``, staged at start), and its pool is removed at shutdown.
- With plugins enabled, the agent's toolbox gets the tools of the running ``kind = "tools"`` plugins
  (:class:`~appliance.plugins.PluginToolset`), resolved through the fleet ``serve`` registers for the
  gateway state when it opens the channels (which may be after the services started).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from appliance.errors import Unavailable
from appliance.log import fresh_context, get_logger

if TYPE_CHECKING:
    from appliance.agent import AgentRuntime
    from appliance.config.settings import Settings
    from appliance.gateway.state import GatewayState

__all__ = ["Services", "boot_needs_services"]

log = get_logger("appliance.services")


def boot_needs_services(db: Any) -> bool:
    """True when the database holds work that must resume at boot (tables exist from migration v2)."""
    checks = (
        "SELECT EXISTS (SELECT 1 FROM queue_items WHERE state IN ('queued', 'running'))",
        "SELECT EXISTS (SELECT 1 FROM agent_turns WHERE status = 'running')",
        "SELECT EXISTS (SELECT 1 FROM sched_tasks WHERE status = 'active')",
    )
    return any(bool(db.scalar(sql)) for sql in checks)


class Services:
    def __init__(self, state: GatewayState, nursery: trio.Nursery) -> None:
        self.state = state
        self._nursery = nursery
        self._ready = trio.Event()
        self._started = False
        self._error: str | None = None

    def start_soon(self) -> None:
        """Start once; safe to call from any task (or before any request, at boot)."""
        if not self._started:
            self._started = True
            self._nursery.start_soon(self._run, name="services")

    async def ready(self) -> None:
        """Wait until the services run. Raises Unavailable when they could not start."""
        self.start_soon()
        await self._ready.wait()
        if self._error is not None:
            raise Unavailable(f"work services failed to start: {self._error}")

    async def _run(self) -> None:
        try:
            with fresh_context():  # started from some request's task; its req_id must not stick
                await self._serve()
        except Exception as exc:  # a bug or a broken store: report it to callers, keep the gateway up
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("services_failed", exc)  # noqa: TRY401 -- our Logger takes the exception explicitly
            self._ready.set()

    async def _serve(self) -> None:
        from appliance.agent import AgentRuntime
        from appliance.agent.gate import QueueTurnGate
        from appliance.agent.loop import TurnRequest
        from appliance.gateway.methods.chat import attach_runtime
        from appliance.queue import QueueItem, SqliteJournal, open_run_queue, queue_options
        from appliance.scheduler import SqliteTaskStore, open_scheduler, queue_dispatch

        state = self.state
        settings = state.settings
        conn = state.db.connection
        gate = QueueTurnGate()
        runtime = AgentRuntime.from_settings(settings, state.db, wall_ms=state.wall_ms)
        runtime.gate = gate
        if settings.plugins.enabled:
            from appliance.plugins import PluginToolset, fleet_for

            runtime.toolbox.plugins = PluginToolset(
                lambda: fleet_for(state), call_timeout_s=settings.plugins.call_timeout_s
            )

        async def run_item(item: QueueItem) -> str | None:
            if gate.owns(item.item_id):
                result: str | None = await gate.runner(item)
                return result
            if item.task_id is None:  # recovered interactive slot: its turn was reported failed already
                return "orphaned"
            run_id: str = item.idempotency_key or item.item_id
            # scheduled turns: subscribed clients (sessions.messages.subscribe, the TUI) see them too
            sink = state.fanout.run_sink(item.session_key)
            runtime.submit(TurnRequest(session_key=item.session_key, message=item.text, run_id=run_id), sink)
            return run_id

        async with (
            _sandbox_for(settings, runtime),
            trio.open_nursery() as turns,
            open_run_queue(run_item, SqliteJournal(conn), **queue_options(settings.queue)) as queue,
        ):
            gate.queue = queue
            recovered = runtime.start(turns)
            attach_runtime(state, runtime)
            async with open_scheduler(
                SqliteTaskStore(conn), queue_dispatch(queue), max_tasks=settings.scheduler.max_tasks
            ) as scheduler:
                state.run_queue = queue
                state.scheduler = scheduler
                log.info("services_started", recovered_turns=len(recovered))
                self._ready.set()
                try:
                    await trio.sleep_forever()
                finally:
                    state.scheduler = None
                    state.run_queue = None
                    with trio.CancelScope(shield=True):
                        await runtime.aclose()


@contextlib.asynccontextmanager
async def _sandbox_for(settings: Settings, runtime: AgentRuntime) -> AsyncIterator[None]:
    """Hold the sandbox service for the services' lifetime and route the agent's exec through it."""
    if settings.sandbox.backend == "none":
        yield
        return
    from appliance.agent.toolbox import sandbox_runner
    from appliance.sandbox.service import open_sandbox_service

    async with open_sandbox_service(settings) as sandbox:
        runtime.toolbox.run_exec = sandbox_runner(settings, sandbox)
        yield
