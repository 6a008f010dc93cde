"""``cron.*`` methods: status, list, get, add, update, remove, run, runs, shaped as OpenClaw's gateway.

Rules:
- Wire shapes follow OpenClaw's ``schema/cron.ts``: a job is ``{id, agentId, name, enabled, createdAtMs,
  updatedAtMs, schedule, sessionTarget, wakeMode, payload, state{...}}``; schedules are
  ``{kind:"at", at}``, ``{kind:"every", everyMs, anchorMs?}`` and ``{kind:"cron", expr, tz?}``; payloads
  ``systemEvent{text}`` or ``agentTurn{message,...}`` (``command`` payloads are refused).
- The scheduler keeps what it runs (schedule, prompt, session key); wire-only fields (payload kind and
  options, ``sessionTarget``, ``wakeMode``, ``description``, ``delivery``...) ride along in
  ``Task.extra_json`` so that a job reads back as it was written.
- ``at`` without an offset is read in ``scheduler.timezone`` (NanoClaw read it in the host zone: #483).
- ``sessionTarget``: ``main`` -> the agent's main session; ``isolated`` -> ``agent:<id>:cron:<jobId>``;
  ``current`` -> ``sessionKey`` or main; ``session:<key>`` -> that key.
- The scheduler is found on ``ctx.state.scheduler``; without one every method answers UNAVAILABLE.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import Any

from appliance.errors import InvalidRequest, NotFound, Unavailable, ValidationFailed
from appliance.gateway.dispatch import MethodContext, MethodTable, Scope
from appliance.models.tasks import RunStatus, ScheduleKind, Task, TaskRun, TaskSpec, TaskStatus
from appliance.scheduler import Scheduler, TaskBusy

__all__ = ["job_to_wire", "run_to_wire", "table"]

table = MethodTable()

_DEFAULT_AGENT = "main"
_LIST_LIMIT_MAX = 200
_MISSING = object()


def _fail(method: str, path: str, why: str) -> ValidationFailed:
    where = path or "root"
    return ValidationFailed(
        f"invalid {method} params: at {where}: {why}",
        details={"errors": [{"path": path, "message": why}]},
    )


async def _ensure_services(ctx: MethodContext) -> None:
    """Start the scheduler on first use (see appliance.runtime.services); bare test states lack the hook."""
    ensure = getattr(ctx.state, "ensure_services", None)
    if ensure is not None:
        await ensure()


async def _scheduler(ctx: MethodContext) -> Scheduler:
    await _ensure_services(ctx)
    scheduler = getattr(ctx.state, "scheduler", None)
    if not isinstance(scheduler, Scheduler):
        raise Unavailable("cron scheduler is not running")
    return scheduler


def _object(method: str, raw: Any, allowed: tuple[str, ...], path: str = "") -> Mapping[str, Any]:
    if raw is None and not path:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _fail(method, path, "must be object")
    unknown = sorted(k for k in raw if k not in allowed)
    if unknown:
        raise _fail(method, path, f"unexpected property '{unknown[0]}'")
    return raw


def _str(
    method: str, obj: Mapping[str, Any], name: str, path: str = "", *, required: bool = False
) -> str | None:
    value = obj.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise _fail(method, path, f"must have required property '{name}'")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(method, f"{path}/{name}", "must be a non-empty string")
    return value


def _int(method: str, obj: Mapping[str, Any], name: str, path: str = "", *, minimum: int = 0) -> int | None:
    value = obj.get(name, _MISSING)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(method, f"{path}/{name}", "must be integer")
    if value < minimum:
        raise _fail(method, f"{path}/{name}", f"must be >= {minimum}")
    return value


def _bool(method: str, obj: Mapping[str, Any], name: str) -> bool | None:
    value = obj.get(name, _MISSING)
    if value is _MISSING:
        return None
    if not isinstance(value, bool):
        raise _fail(method, f"/{name}", "must be boolean")
    return value


def _job_id(method: str, params: Mapping[str, Any]) -> str:
    job_id = _str(method, params, "id") or _str(method, params, "jobId")
    if job_id is None:
        raise InvalidRequest(f"invalid {method} params: missing id")
    return job_id


# -- schedule and payload --------------------------------------------------------------------------


def _parse_at(method: str, text: str, tz: str) -> int:
    try:
        if text.strip().isdigit():
            return int(text)
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise _fail(method, "/schedule/at", "must be an ISO-8601 timestamp") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return int(when.timestamp() * 1000)


def _schedule(method: str, raw: Any, *, now_ms: int, default_tz: str) -> tuple[TaskSpec, dict[str, Any]]:
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    allowed = {
        "at": ("kind", "at"),
        "every": ("kind", "everyMs", "anchorMs"),
        "cron": ("kind", "expr", "tz", "staggerMs"),
    }
    if kind not in allowed:
        raise _fail(method, "/schedule/kind", "must be equal to one of the allowed values (at|every|cron)")
    obj = _object(method, raw, allowed[kind], "/schedule")
    try:
        if kind == "at":
            at_text = _str(method, obj, "at", "/schedule", required=True) or ""
            spec = TaskSpec.once(_parse_at(method, at_text, default_tz))
            wire: dict[str, Any] = {"kind": "at", "at": at_text}
        elif kind == "every":
            every = _int(method, obj, "everyMs", "/schedule", minimum=1)
            if every is None:
                raise _fail(method, "/schedule", "must have required property 'everyMs'")
            anchor = _int(method, obj, "anchorMs", "/schedule")
            spec = TaskSpec.interval(every, now_ms if anchor is None else anchor)
            wire = {"kind": "every", "everyMs": every, "anchorMs": spec.anchor_ms}
        else:
            expr = _str(method, obj, "expr", "/schedule", required=True) or ""
            tz = _str(method, obj, "tz", "/schedule") or default_tz
            spec = TaskSpec.cron(expr, tz)
            wire = {"kind": "cron", "expr": expr, "tz": tz}
    except ValueError as exc:
        raise _fail(method, "/schedule", str(exc)) from exc
    return spec, wire


_PAYLOAD_KEYS = {
    "systemEvent": ("kind", "text"),
    "agentTurn": (
        "kind",
        "message",
        "model",
        "fallbacks",
        "thinking",
        "timeoutSeconds",
        "allowUnsafeExternalContent",
        "lightContext",
        "toolsAllow",
        "toolsAllowIsDefault",
    ),
}


def _payload(method: str, raw: Any, base: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if kind == "command":
        raise InvalidRequest(f"invalid {method} params: command payloads are not supported on this gateway")
    if kind not in _PAYLOAD_KEYS:
        raise _fail(
            method, "/payload/kind", "must be equal to one of the allowed values (systemEvent|agentTurn)"
        )
    obj = _object(method, raw, _PAYLOAD_KEYS[kind], "/payload")
    merged: dict[str, Any] = dict(base) if base is not None and base.get("kind") == kind else {}
    merged.update({k: v for k, v in obj.items() if v is not None})
    text_key = "text" if kind == "systemEvent" else "message"
    text = merged.get(text_key)
    if not isinstance(text, str) or not text.strip():
        raise _fail(method, f"/payload/{text_key}", "must be a non-empty string")
    return text, merged


def _session_key(method: str, target: str, *, agent_id: str, job_id: str, current: str | None) -> str:
    main = f"agent:{agent_id}:main"
    if target == "main":
        return main
    if target == "isolated":
        return f"agent:{agent_id}:cron:{job_id}"
    if target == "current":
        return current or main
    if target.startswith("session:") and len(target) > len("session:"):
        return target[len("session:") :]
    raise _fail(method, "/sessionTarget", "must be main, isolated, current or session:<key>")


# -- wire shapes -------------------------------------------------------------------------------------


def _extra(task: Task) -> dict[str, Any]:
    try:
        loaded = json.loads(task.extra_json or "{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _wire_status(status: RunStatus | None) -> str | None:
    if status is None or status is RunStatus.RUNNING:
        return None
    return "ok" if status is RunStatus.OK else "error"


def job_to_wire(task: Task, running: TaskRun | None = None) -> dict[str, Any]:
    """A task as OpenClaw's ``CronJob``."""
    extra = _extra(task)
    agent_id = extra.get("agentId") or _DEFAULT_AGENT
    state: dict[str, Any] = {}
    if task.next_run_ms is not None and task.status is TaskStatus.ACTIVE:
        state["nextRunAtMs"] = task.next_run_ms
    if running is not None:
        state["runningAtMs"] = running.started_ms
    if task.last_run_ms is not None:
        state["lastRunAtMs"] = task.last_run_ms
    last = _wire_status(task.last_status)
    if last is not None:
        state["lastRunStatus"] = last
        state["lastStatus"] = last
    if task.last_error:
        state["lastError"] = task.last_error
    job: dict[str, Any] = {
        "id": task.id,
        "agentId": agent_id,
        "sessionKey": task.session_key,
        "name": task.name,
        "displayName": task.name,
        "enabled": task.status is TaskStatus.ACTIVE,
        "createdAtMs": task.created_ms,
        "updatedAtMs": task.updated_ms,
        "schedule": extra.get("schedule") or _schedule_wire(task.spec),
        "sessionTarget": extra.get("sessionTarget", "main"),
        "wakeMode": extra.get("wakeMode", "now"),
        "payload": extra.get("payload") or {"kind": "agentTurn", "message": task.prompt},
        "state": state,
        "nextRunAtMs": state.get("nextRunAtMs"),
        "effectiveAgentId": agent_id,
    }
    for key in ("description", "deleteAfterRun", "delivery"):
        if key in extra:
            job[key] = extra[key]
    return job


def _schedule_wire(spec: TaskSpec) -> dict[str, Any]:
    if spec.kind is ScheduleKind.CRON:
        return {"kind": "cron", "expr": spec.expr, "tz": spec.tz}
    if spec.kind is ScheduleKind.INTERVAL:
        return {"kind": "every", "everyMs": spec.every_ms, "anchorMs": spec.anchor_ms}
    at = dt.datetime.fromtimestamp(spec.at_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    return {"kind": "at", "at": at.replace("+00:00", "Z")}


def run_to_wire(run: TaskRun, task: Task | None) -> dict[str, Any]:
    """A finished run as OpenClaw's ``CronRunLogEntry``."""
    entry: dict[str, Any] = {
        "ts": run.ended_ms if run.ended_ms is not None else run.started_ms,
        "jobId": run.task_id,
        "action": "finished",
        "runId": run.run_id,
        "runAtMs": run.started_ms,
    }
    status = _wire_status(run.status)
    if status is not None:
        entry["status"] = status
    if run.error:
        entry["error"] = run.error
    if run.result:
        entry["summary"] = run.result
    if run.duration_ms is not None:
        entry["durationMs"] = max(0, run.duration_ms)
    if task is not None:
        entry["jobName"] = task.name
        entry["sessionKey"] = task.session_key
        if task.next_run_ms is not None:
            entry["nextRunAtMs"] = task.next_run_ms
    return entry


# -- handlers ----------------------------------------------------------------------------------------


@table.method("cron.status", scope=Scope.READ)
async def cron_status(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    _object("cron.status", params, ())
    await _ensure_services(ctx)
    scheduler = getattr(ctx.state, "scheduler", None)
    path = str(getattr(ctx.state.db, "path", "") or "")
    running = isinstance(scheduler, Scheduler)
    return {
        "enabled": running and ctx.state.settings.scheduler.enabled,
        "triggersEnabled": running,
        "storePath": path,
        "storage": "sqlite",
        "sqlitePath": path,
        "jobs": len(scheduler.tasks()) if isinstance(scheduler, Scheduler) else 0,
        "nextWakeAtMs": scheduler.next_wake_ms() if isinstance(scheduler, Scheduler) else None,
    }


_LIST_KEYS = (
    "includeDisabled",
    "limit",
    "offset",
    "query",
    "enabled",
    "scheduleKind",
    "lastRunStatus",
    "sortBy",
    "sortDir",
    "agentId",
    "compact",
)
_KIND_NAMES = {ScheduleKind.ONCE: "at", ScheduleKind.INTERVAL: "every", ScheduleKind.CRON: "cron"}


def _choice(method: str, params: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(name, default)
    if value not in choices:
        raise _fail(method, f"/{name}", f"must be equal to one of the allowed values ({'|'.join(choices)})")
    return str(value)


@table.method("cron.list", scope=Scope.READ)
async def cron_list(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    m = "cron.list"
    p = _object(m, params, _LIST_KEYS)
    scheduler = await _scheduler(ctx)
    limit = _int(m, p, "limit", minimum=1) or 50
    if limit > _LIST_LIMIT_MAX:
        raise _fail(m, "/limit", f"must be <= {_LIST_LIMIT_MAX}")
    offset = _int(m, p, "offset") or 0
    include_disabled = bool(_bool(m, p, "includeDisabled"))
    enabled = _choice(
        m, p, "enabled", ("all", "enabled", "disabled"), "all" if include_disabled else "enabled"
    )
    kind = _choice(m, p, "scheduleKind", ("all", "at", "every", "cron", "on-exit"), "all")
    last = _choice(m, p, "lastRunStatus", ("all", "ok", "error", "skipped", "unknown"), "all")
    sort_by = _choice(m, p, "sortBy", ("nextRunAtMs", "updatedAtMs", "name"), "nextRunAtMs")
    sort_dir = _choice(m, p, "sortDir", ("asc", "desc"), "asc")
    query = p.get("query")
    if query is not None and not isinstance(query, str):
        raise _fail(m, "/query", "must be string")
    agent = _str(m, p, "agentId")
    _bool(m, p, "compact")

    jobs = []
    for task in scheduler.tasks():
        job = job_to_wire(task, scheduler.running(task.id))
        if enabled != "all" and job["enabled"] != (enabled == "enabled"):
            continue
        if kind != "all" and _KIND_NAMES[task.spec.kind] != kind:
            continue
        status = job["state"].get("lastRunStatus", "unknown")
        if last != "all" and status != last:
            continue
        if query and query.lower() not in f"{task.name} {job.get('description', '')}".lower():
            continue
        if agent is not None and job["agentId"] != agent:
            continue
        jobs.append(job)
    far = 2**53
    if sort_by == "name":
        jobs.sort(key=lambda j: (j["name"].lower(), j["id"]), reverse=sort_dir == "desc")
    else:
        jobs.sort(key=lambda j: (j.get(sort_by) or far, j["id"]), reverse=sort_dir == "desc")
    page = jobs[offset : offset + limit]
    has_more = offset + len(page) < len(jobs)
    return {
        "jobs": page,
        "total": len(jobs),
        "offset": offset,
        "limit": limit,
        "hasMore": has_more,
        "nextOffset": offset + len(page) if has_more else None,
        "snapshotRevision": _revision(scheduler),
        "deliveryPreviews": {},
    }


def _revision(scheduler: Scheduler) -> str:
    """A non-empty string that changes whenever the job set does (the CLI pages on it)."""
    tasks = scheduler.tasks()
    return f"{max((t.updated_ms for t in tasks), default=0)}-{len(tasks)}"


@table.method("cron.get", scope=Scope.READ)
async def cron_get(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = _object("cron.get", params, ("id", "jobId"))
    scheduler = await _scheduler(ctx)
    task = scheduler.get(_job_id("cron.get", p))
    return job_to_wire(task, scheduler.running(task.id))


_ADD_KEYS = (
    "name",
    "agentId",
    "sessionKey",
    "description",
    "enabled",
    "deleteAfterRun",
    "schedule",
    "sessionTarget",
    "wakeMode",
    "payload",
    "delivery",
    "failureAlert",
)


@table.method("cron.add", scope=Scope.ADMIN)
async def cron_add(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    m = "cron.add"
    p = _object(m, params, _ADD_KEYS)
    scheduler = await _scheduler(ctx)
    name = _str(m, p, "name", required=True) or ""
    for required in ("schedule", "sessionTarget", "payload"):
        if required not in p:
            raise _fail(m, "", f"must have required property '{required}'")
    now = ctx.state.wall_ms()
    spec, schedule_wire = _schedule(
        m, p["schedule"], now_ms=now, default_tz=ctx.state.settings.scheduler.timezone
    )
    prompt, payload = _payload(m, p["payload"])
    target = _str(m, p, "sessionTarget", required=True) or ""
    wake = _choice(m, p, "wakeMode", ("next-heartbeat", "now"), "now")
    agent_id = _str(m, p, "agentId") or _DEFAULT_AGENT
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    session_key = _session_key(m, target, agent_id=agent_id, job_id=job_id, current=_str(m, p, "sessionKey"))
    extra: dict[str, Any] = {
        "agentId": agent_id,
        "schedule": schedule_wire,
        "sessionTarget": target,
        "wakeMode": wake,
        "payload": payload,
    }
    for key in ("description", "deleteAfterRun", "delivery"):
        if key in p:
            extra[key] = p[key]
    enabled = _bool(m, p, "enabled")
    task = scheduler.add(
        name=name,
        spec=spec,
        prompt=prompt,
        session_key=session_key,
        task_id=job_id,
        status=TaskStatus.PAUSED if enabled is False else TaskStatus.ACTIVE,
        extra_json=json.dumps(extra, separators=(",", ":")),
    )
    return job_to_wire(task)


_PATCH_KEYS = (*_ADD_KEYS, "state")


@table.method("cron.update", scope=Scope.ADMIN)
async def cron_update(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    m = "cron.update"
    p = _object(m, params, ("id", "jobId", "patch"))
    scheduler = await _scheduler(ctx)
    task = scheduler.get(_job_id(m, p))
    patch = _object(m, p.get("patch"), _PATCH_KEYS, "/patch")
    extra = _extra(task)
    now = ctx.state.wall_ms()
    spec = None
    if "schedule" in patch:
        spec, extra["schedule"] = _schedule(
            m, patch["schedule"], now_ms=now, default_tz=ctx.state.settings.scheduler.timezone
        )
    prompt = None
    if "payload" in patch:
        prompt, extra["payload"] = _payload(m, patch["payload"], extra.get("payload"))
    session_key = None
    if "sessionTarget" in patch or "agentId" in patch:
        target = _str(m, patch, "sessionTarget") or extra.get("sessionTarget", "main")
        extra["agentId"] = _str(m, patch, "agentId") or extra.get("agentId", _DEFAULT_AGENT)
        extra["sessionTarget"] = target
        session_key = _session_key(
            m, target, agent_id=extra["agentId"], job_id=task.id, current=_str(m, patch, "sessionKey")
        )
    if "wakeMode" in patch:
        extra["wakeMode"] = _choice(m, patch, "wakeMode", ("next-heartbeat", "now"), "now")
    for key in ("description", "deleteAfterRun", "delivery"):
        if key in patch:
            extra[key] = patch[key]
    task = scheduler.update(
        task.id,
        name=_str(m, patch, "name"),
        spec=spec,
        prompt=prompt,
        session_key=session_key,
        extra_json=json.dumps(extra, separators=(",", ":")),
    )
    enabled = _bool(m, patch, "enabled")
    if enabled is True:
        task = scheduler.resume(task.id)
    elif enabled is False:
        task = scheduler.pause(task.id)
    return job_to_wire(task, scheduler.running(task.id))


@table.method("cron.remove", scope=Scope.ADMIN)
async def cron_remove(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    p = _object("cron.remove", params, ("id", "jobId"))
    scheduler = await _scheduler(ctx)
    try:
        scheduler.remove(_job_id("cron.remove", p))
    except NotFound:
        return {"ok": True, "removed": False}
    return {"ok": True, "removed": True}


@table.method("cron.run", scope=Scope.ADMIN)
async def cron_run(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    m = "cron.run"
    p = _object(m, params, ("id", "jobId", "mode"))
    scheduler = await _scheduler(ctx)
    task = scheduler.get(_job_id(m, p))
    mode = _choice(m, p, "mode", ("due", "force"), "force")
    if mode == "due" and (task.next_run_ms is None or task.next_run_ms > ctx.state.wall_ms()):
        return {"ok": True, "ran": False, "reason": "not-due"}
    try:
        run = scheduler.run_now(task.id)
    except TaskBusy:
        return {"ok": True, "ran": False, "reason": "already-running"}
    return {"ok": True, "ran": True, "enqueued": True, "runId": run.run_id, "jobId": task.id}


_RUNS_KEYS = (
    "scope",
    "id",
    "jobId",
    "runId",
    "limit",
    "offset",
    "statuses",
    "status",
    "deliveryStatuses",
    "deliveryStatus",
    "query",
    "sortDir",
    "agentId",
)


@table.method("cron.runs", scope=Scope.READ)
async def cron_runs(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    m = "cron.runs"
    p = _object(m, params, _RUNS_KEYS)
    scheduler = await _scheduler(ctx)
    job_id = _str(m, p, "id") or _str(m, p, "jobId")
    scope = _choice(m, p, "scope", ("job", "all"), "job" if job_id else "all")
    if scope == "job" and job_id is None:
        raise InvalidRequest(f"invalid {m} params: missing id")
    limit = _int(m, p, "limit", minimum=1) or 50
    if limit > _LIST_LIMIT_MAX:
        raise _fail(m, "/limit", f"must be <= {_LIST_LIMIT_MAX}")
    offset = _int(m, p, "offset") or 0
    wanted = set(p.get("statuses") or [])
    status = _choice(m, p, "status", ("all", "ok", "error", "skipped"), "all")
    if status != "all":
        wanted.add(status)
    run_id = _str(m, p, "runId")
    query = p.get("query") if isinstance(p.get("query"), str) else None
    tasks = {t.id: t for t in scheduler.tasks()}
    runs = [
        r
        for r in scheduler.runs(job_id if scope == "job" else None, limit=10_000)
        if r.status is not RunStatus.RUNNING
    ]
    entries = []
    for run in runs:
        entry = run_to_wire(run, tasks.get(run.task_id))
        if run_id is not None and run.run_id != run_id:
            continue
        if wanted and entry.get("status") not in wanted:
            continue
        if query and query.lower() not in f"{entry.get('jobName', '')} {entry.get('summary', '')}".lower():
            continue
        entries.append(entry)
    if p.get("sortDir") == "asc":
        entries.reverse()
    page = entries[offset : offset + limit]
    has_more = offset + len(page) < len(entries)
    return {
        "entries": page,
        "total": len(entries),
        "offset": offset,
        "limit": limit,
        "hasMore": has_more,
        "nextOffset": offset + len(page) if has_more else None,
    }
