"""Sandbox: every agent run and tool command in a container, with nothing it was not given.

Layers (one way): ``policy`` (sans-IO: mounts, egress, limits -> RunSpec) and ``output`` (sans-IO caps)
<- ``paths``/``pipes``/``oom`` (host I/O) <- ``backend`` (Protocol + shared lifecycle) <- ``podman`` /
``docker`` (engine edges) <- ``service`` (settings -> backend, policy-checked runs) <- ``cli``.
Heavy engine clients are imported lazily by ``service.open_backend``.
"""

from __future__ import annotations

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
from appliance.sandbox.service import SandboxPaths, open_backend, probe_engine, run_in_sandbox

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
    "build_run_spec",
    "open_backend",
    "parse_egress_allowlist",
    "parse_mount_allowlist",
    "probe_engine",
    "resolve_mounts",
    "run_in_sandbox",
]
