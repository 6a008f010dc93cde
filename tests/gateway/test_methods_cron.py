"""``cron.*`` handlers called directly against a live scheduler under trio's mock clock (no sockets)."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
import trio
import trio.testing

from appliance.config.settings import SchedulerSettings, Settings
from appliance.errors import InvalidRequest, Unavailable, ValidationFailed
from appliance.gateway.dispatch import MethodContext
from appliance.gateway.methods import cron
from appliance.gateway.state import GatewayState
from appliance.models.tasks import Task, TaskRun
from appliance.scheduler import MemoryTaskStore, Scheduler, open_scheduler

_INTEGRATION_DIR = Path(__file__).resolve().parents[1] / "integration"
BASE = 1_790_000_000_000  # 2026-09-21T14:13:20Z


class _Origin:
    t0 = 0.0


def clock_ms() -> int:
    """Wall time pinned to BASE at the start of the test (trio's mock clock starts at an arbitrary value)."""
    return BASE + round((trio.current_time() - _Origin.t0) * 1000)


async def dispatch(task: Task, run: TaskRun) -> str:
    await trio.sleep(2)
    return f"ran {task.name}"


def make_ctx(scheduler: Scheduler | None, tz: str = "UTC") -> MethodContext:
    settings = attrs.evolve(Settings(), scheduler=SchedulerSettings(timezone=tz))
    state = types.SimpleNamespace(
        settings=settings,
        wall_ms=clock_ms,
        db=types.SimpleNamespace(path="/data/appliance.db"),
        scheduler=scheduler,
    )

    async def emit(event: str, payload: Any) -> None:
        return None

    return MethodContext(
        state=cast(GatewayState, state),
        conn_id="c",
        req_id="r",
        scopes=frozenset({"operator.admin"}),
        emit=emit,
    )


@pytest.fixture
async def sched() -> AsyncIterator[Scheduler]:
    _Origin.t0 = trio.current_time()
    async with open_scheduler(MemoryTaskStore(), dispatch, now_ms=clock_ms) as scheduler:
        yield scheduler


async def call(ctx: MethodContext, method: str, params: Any = None) -> Any:
    return await cron.table.methods[method].handler(ctx, params if params is not None else {})


CRON_JOB: dict[str, Any] = {
    "name": "Morning brief",
    "schedule": {"kind": "cron", "expr": "0 7 * * *", "tz": "Europe/Berlin"},
    "sessionTarget": "isolated",
    "wakeMode": "now",
    "payload": {"kind": "agentTurn", "message": "Summarise overnight updates."},
    "description": "daily",
}


async def test_add_list_status_get(sched: Scheduler, autojump_clock: trio.testing.MockClock) -> None:
    ctx = make_ctx(sched)
    with trio.fail_after(60):
        job = await call(ctx, "cron.add", CRON_JOB)
        assert job["schedule"] == CRON_JOB["schedule"]
        assert job["payload"] == CRON_JOB["payload"]
        assert job["sessionTarget"] == "isolated"
        assert job["sessionKey"] == f"agent:main:cron:{job['id']}"
        assert job["enabled"] is True
        assert job["description"] == "daily"
        assert job["state"]["nextRunAtMs"] == 1_790_053_200_000  # 2026-09-22 07:00 CEST
        listed = await call(ctx, "cron.list")
        assert listed["total"] == 1
        assert listed["hasMore"] is False
        assert set(listed) >= {
            "jobs",
            "total",
            "offset",
            "limit",
            "hasMore",
            "nextOffset",
            "deliveryPreviews",
        }
        assert listed["jobs"][0] == job
        assert isinstance(listed["snapshotRevision"], str)  # the real CLI refuses a page without one
        assert listed["snapshotRevision"]
        assert listed["nextOffset"] is None
        assert set(job) >= {
            "id", "agentId", "name", "enabled", "createdAtMs", "schedule", "sessionTarget", "wakeMode",
            "payload", "state", "updatedAtMs", "nextRunAtMs", "effectiveAgentId", "displayName",
        }  # fmt: skip
        status = await call(ctx, "cron.status")
        assert status == {
            "enabled": True,
            "triggersEnabled": True,
            "storePath": "/data/appliance.db",
            "storage": "sqlite",
            "sqlitePath": "/data/appliance.db",
            "jobs": 1,
            "nextWakeAtMs": job["nextRunAtMs"],
        }
        assert await call(ctx, "cron.get", {"jobId": job["id"]}) == job


async def test_run_then_runs_shows_the_finished_run(
    sched: Scheduler, autojump_clock: trio.testing.MockClock
) -> None:
    ctx = make_ctx(sched)
    with trio.fail_after(60):
        job = await call(
            ctx,
            "cron.add",
            {
                "name": "every hour",
                "schedule": {"kind": "every", "everyMs": 3_600_000},
                "sessionTarget": "main",
                "payload": {"kind": "systemEvent", "text": "tick"},
            },
        )
        assert job["schedule"] == {"kind": "every", "everyMs": 3_600_000, "anchorMs": BASE}
        assert job["sessionKey"] == "agent:main:main"
        result = await call(ctx, "cron.run", {"id": job["id"]})
        assert result["ok"] is True
        assert result["ran"] is True
        busy = await call(ctx, "cron.run", {"id": job["id"]})
        assert busy == {"ok": True, "ran": False, "reason": "already-running"}
        assert await call(ctx, "cron.run", {"id": job["id"], "mode": "due"}) == {
            "ok": True,
            "ran": False,
            "reason": "not-due",
        }
        assert (await call(ctx, "cron.runs", {"id": job["id"]}))["entries"] == []  # still running
        await trio.sleep(5)
        runs = await call(ctx, "cron.runs", {"id": job["id"], "runId": result["runId"]})
        assert runs["total"] == 1
        entry = runs["entries"][0]
        assert entry["status"] == "ok"
        assert entry["action"] == "finished"
        assert entry["summary"] == "ran every hour"
        assert entry["durationMs"] == 2000
        assert entry["jobName"] == "every hour"
        got = await call(ctx, "cron.get", {"id": job["id"]})
        assert got["state"]["lastRunStatus"] == "ok"
        assert (await call(ctx, "cron.runs", {"scope": "all", "status": "error"}))["entries"] == []


async def test_update_disable_and_remove(sched: Scheduler, autojump_clock: trio.testing.MockClock) -> None:
    ctx = make_ctx(sched)
    with trio.fail_after(60):
        job = await call(ctx, "cron.add", CRON_JOB)
        updated = await call(
            ctx,
            "cron.update",
            {
                "id": job["id"],
                "patch": {
                    "enabled": False,
                    "name": "renamed",
                    "schedule": {"kind": "cron", "expr": "30 8 * * 1"},
                    "payload": {"kind": "agentTurn", "thinking": "low"},
                },
            },
        )
        assert updated["enabled"] is False
        assert updated["name"] == "renamed"
        assert updated["schedule"] == {"kind": "cron", "expr": "30 8 * * 1", "tz": "UTC"}
        assert updated["payload"] == {**CRON_JOB["payload"], "thinking": "low"}
        assert (await call(ctx, "cron.list"))["total"] == 0
        assert (await call(ctx, "cron.list", {"includeDisabled": True}))["total"] == 1
        resumed = await call(ctx, "cron.update", {"id": job["id"], "patch": {"enabled": True}})
        assert resumed["state"]["nextRunAtMs"] == 1_790_584_200_000  # Monday 2026-09-28 08:30Z
        assert await call(ctx, "cron.remove", {"id": job["id"]}) == {"ok": True, "removed": True}
        assert await call(ctx, "cron.remove", {"id": job["id"]}) == {"ok": True, "removed": False}


async def test_at_without_offset_is_read_in_the_configured_zone(
    sched: Scheduler, autojump_clock: trio.testing.MockClock
) -> None:
    ctx = make_ctx(sched, tz="America/New_York")
    with trio.fail_after(60):
        job = await call(
            ctx,
            "cron.add",
            {
                "name": "reminder",
                "schedule": {"kind": "at", "at": "2026-10-01T09:00:00"},
                "sessionTarget": "main",
                "enabled": True,
                "payload": {"kind": "systemEvent", "text": "stand up"},
            },
        )
    assert job["state"]["nextRunAtMs"] == 1_790_859_600_000  # 13:00Z
    assert job["schedule"] == {"kind": "at", "at": "2026-10-01T09:00:00"}


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {**CRON_JOB, "bogus": 1},
            ValidationFailed,
            "invalid cron.add params: at root: unexpected property 'bogus'",
        ),
        ({k: v for k, v in CRON_JOB.items() if k != "schedule"}, ValidationFailed, None),
        ({**CRON_JOB, "schedule": {"kind": "weekly"}}, ValidationFailed, None),
        ({**CRON_JOB, "schedule": {"kind": "cron", "expr": "not a cron"}}, ValidationFailed, None),
        (
            {**CRON_JOB, "schedule": {"kind": "cron", "expr": "* * * * *", "tz": "Mars/Base"}},
            ValidationFailed,
            None,
        ),
        ({**CRON_JOB, "schedule": {"kind": "at", "at": "tomorrow"}}, ValidationFailed, None),
        ({**CRON_JOB, "schedule": {"kind": "at", "at": "2020-01-01T00:00:00Z"}}, ValidationFailed, None),
        ({**CRON_JOB, "payload": {"kind": "command", "argv": ["ls"]}}, InvalidRequest, None),
        ({**CRON_JOB, "payload": {"kind": "agentTurn"}}, ValidationFailed, None),
        ({**CRON_JOB, "sessionTarget": "elsewhere"}, ValidationFailed, None),
        ({**CRON_JOB, "name": 3}, ValidationFailed, None),
    ],
)
async def test_add_validation(
    sched: Scheduler,
    autojump_clock: trio.testing.MockClock,
    params: dict[str, Any],
    error: type[Exception],
    message: str | None,
) -> None:
    with pytest.raises(error) as info:
        await call(make_ctx(sched), "cron.add", params)
    if message is not None:
        assert str(info.value) == message
    assert sched.tasks() == []


async def test_missing_ids_and_unknown_jobs(sched: Scheduler, autojump_clock: trio.testing.MockClock) -> None:
    ctx = make_ctx(sched)
    for method in ("cron.get", "cron.run", "cron.update"):
        with pytest.raises(InvalidRequest):
            await call(
                ctx, method, {"id": "nope", "patch": {}} if method == "cron.update" else {"id": "nope"}
            )
    with pytest.raises(InvalidRequest, match="missing id"):
        await call(ctx, "cron.runs", {"scope": "job"})
    with pytest.raises(ValidationFailed):
        await call(ctx, "cron.list", {"limit": 1000})


async def test_without_a_scheduler_methods_are_unavailable() -> None:
    ctx = make_ctx(None)
    with pytest.raises(Unavailable):
        await call(ctx, "cron.list")
    status = await call(ctx, "cron.status")
    assert status["enabled"] is False
    assert status["jobs"] == 0


@attrs.define
class _StateWithScheduler(GatewayState):
    """Until GatewayState grows a ``scheduler`` field, the test adds one."""

    scheduler: Scheduler | None = None


@pytest.mark.integration
@pytest.mark.openclaw
async def test_real_openclaw_cli_adds_lists_runs_and_removes_a_job(tmp_path: Path) -> None:
    import os
    import sys

    from appliance.config.settings import GatewaySettings
    from appliance.gateway.dispatch import MethodTable
    from appliance.gateway.methods import system
    from appliance.gateway.server import serve_gateway

    if os.environ.get("APPLIANCE_SKIP_OPENCLAW") == "1":
        pytest.skip("APPLIANCE_SKIP_OPENCLAW=1")
    sys.path.insert(0, str(_INTEGRATION_DIR))
    from openclaw_client import (  # type: ignore[import-not-found]  # tests/integration is not a package
        OpenClawCLI,
        install_openclaw,
    )

    cli = OpenClawCLI(await trio.to_thread.run_sync(install_openclaw), tmp_path)
    table = MethodTable()
    table.merge(system.table)
    table.merge(cron.table)

    async def quick(task: Task, run: TaskRun) -> str:
        return f"ran {task.name}"

    with trio.fail_after(300):
        async with open_scheduler(MemoryTaskStore(), quick) as scheduler, trio.open_nursery() as nursery:
            settings = Settings(gateway=GatewaySettings(port=0, token="tok"))
            state = _StateWithScheduler(settings=settings, db=None, scheduler=scheduler)  # type: ignore[arg-type]
            port = await nursery.start(serve_gateway, state, table)
            env = {"OPENCLAW_GATEWAY_URL": f"ws://127.0.0.1:{port}", "OPENCLAW_GATEWAY_TOKEN": "tok"}

            async def run(*args: str) -> Any:
                result = await trio.to_thread.run_sync(lambda: cli.run(*args, env_extra=env, timeout_s=60))
                assert result.rc == 0, result.describe()
                return result.json

            added = await run(
                "cron", "add", "--name", "brief", "--cron", "0 7 * * *", "--tz", "Europe/Berlin",
                "--session", "isolated", "--message", "Summarise", "--json",
            )  # fmt: skip
            assert added["schedule"] == {"kind": "cron", "expr": "0 7 * * *", "tz": "Europe/Berlin"}
            listed = await run("cron", "list", "--json")
            assert [job["id"] for job in listed["jobs"]] == [added["id"]]
            started = await run("cron", "run", added["id"])
            assert started["ran"] is True
            await scheduler.wait_run(started["runId"])
            runs = await run("cron", "runs", "--id", added["id"])
            assert [(e["runId"], e["status"]) for e in runs["entries"]] == [(started["runId"], "ok")]
            assert (await run("cron", "rm", added["id"]))["removed"] is True
            assert (await run("cron", "list", "--json"))["jobs"] == []
            nursery.cancel_scope.cancel()
