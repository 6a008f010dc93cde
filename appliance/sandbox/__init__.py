"""Sandbox: every agent run and tool command in a container, with nothing it was not given.

Layers (one way): ``policy`` (sans-IO: mounts, egress, limits -> RunSpec), ``output`` (sans-IO caps) and
``wire`` (sans-IO: the runner's request frame and result record) <- ``paths``/``pipes``/``oom`` (host
I/O) <- ``backend`` (Protocol + shared stage/execute lifecycle) <- ``podman`` / ``docker`` (engine
edges) <- ``pool`` (warm pool) <- ``service`` (settings -> SandboxService, policy-checked runs) <- ``cli``.
``runner`` is the other side: the container's PID 1, stdlib only, frozen into the image by ``image``.

The names below load on first use (PEP 562): the CLI registers ``appliance sandbox`` on every start, and
``serve`` must not pay for trio/engine imports it may never need (idle RSS budget).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.sandbox.backend import RunResult, SandboxBackend
    from appliance.sandbox.policy import (
        AllowlistError,
        EgressAllowlist,
        Limits,
        Mount,
        MountAllowlist,
        MountRefused,
        MountRequest,
        NetMode,
        RunSpec,
        SandboxRefused,
        build_run_spec,
        parse_egress_allowlist,
        parse_mount_allowlist,
        resolve_mounts,
    )
    from appliance.sandbox.service import (
        SandboxPaths,
        SandboxService,
        open_backend,
        open_sandbox_service,
        probe_engine,
        run_in_sandbox,
    )

_HOME = {
    "RunResult": "backend",
    "SandboxBackend": "backend",
    "AllowlistError": "policy",
    "EgressAllowlist": "policy",
    "Limits": "policy",
    "Mount": "policy",
    "MountAllowlist": "policy",
    "MountRefused": "policy",
    "MountRequest": "policy",
    "NetMode": "policy",
    "RunSpec": "policy",
    "SandboxRefused": "policy",
    "build_run_spec": "policy",
    "parse_egress_allowlist": "policy",
    "parse_mount_allowlist": "policy",
    "resolve_mounts": "policy",
    "SandboxPaths": "service",
    "SandboxService": "service",
    "open_sandbox_service": "service",
    "open_backend": "service",
    "probe_engine": "service",
    "run_in_sandbox": "service",
}

__all__ = [
    "AllowlistError",
    "EgressAllowlist",
    "Limits",
    "Mount",
    "MountAllowlist",
    "MountRefused",
    "MountRequest",
    "NetMode",
    "RunResult",
    "RunSpec",
    "SandboxBackend",
    "SandboxPaths",
    "SandboxRefused",
    "SandboxService",
    "build_run_spec",
    "open_backend",
    "open_sandbox_service",
    "parse_egress_allowlist",
    "parse_mount_allowlist",
    "probe_engine",
    "resolve_mounts",
    "run_in_sandbox",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'appliance.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"appliance.sandbox.{module}"), name)
    globals()[name] = value
    return value
