"""Frozen attrs settings: the one typed view of configuration.

Each field may carry ``metadata={"range": (lo, hi)}`` or ``{"choices": (...)}``; the loader in
:mod:`appliance.config.profiles` checks every layer against these before merging, so an error names the
file and key it came from. Defaults here are the *embedded* defaults (the small-board port plan);
``profiles/embedded.toml`` states them again for operators to read.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

__all__ = [
    "AgentSettings",
    "ChannelsSettings",
    "DefenderSettings",
    "GatewaySettings",
    "OtaSettings",
    "PluginsSettings",
    "QueueSettings",
    "SandboxSettings",
    "SchedulerSettings",
    "Settings",
    "StoreSettings",
    "TelegramSettings",
    "WatchdogSettings",
    "WebhookSettings",
    "WhatsAppSettings",
    "auto_concurrency",
]


def auto_concurrency(cores: int | None = None) -> int:
    """min(2, cores-1), floor 1: leave one core to the gateway on a small board."""
    n = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, min(2, n - 1))


def _r(lo: float, hi: float) -> dict[str, Any]:
    return {"range": (lo, hi)}


def _c(*choices: str) -> dict[str, Any]:
    return {"choices": choices}


@attrs.frozen
class GatewaySettings:
    bind: str = attrs.field(default="loopback", metadata={"help": "loopback | lan | an IP address"})
    port: int = attrs.field(default=18789, metadata=_r(0, 65535))
    auth: str = attrs.field(default="token", metadata=_c("token", "none"))
    token: str = attrs.field(default="", metadata={"secret": True})
    tick_interval_ms: int = attrs.field(default=30_000, metadata=_r(1_000, 600_000))
    handshake_timeout_ms: int = attrs.field(default=15_000, metadata=_r(100, 120_000))
    preauth_max_bytes: int = attrs.field(default=65_536, metadata=_r(1_024, 1_048_576))
    max_payload_bytes: int = attrs.field(default=4_194_304, metadata=_r(4_096, 26_214_400))
    max_buffered_bytes: int = attrs.field(default=8_388_608, metadata=_r(8_192, 52_428_800))
    max_connections: int = attrs.field(default=32, metadata=_r(1, 4096))
    rate_limit_per_s: float = attrs.field(default=50.0, metadata=_r(0.1, 100_000))
    rate_limit_burst: int = attrs.field(default=100, metadata=_r(1, 100_000))
    shutdown_grace_s: float = attrs.field(default=5.0, metadata=_r(0, 300))
    #: OpenAI-compatible POST /v1/chat/completions on the gateway port (token-protected)
    http_chat_completions: bool = False


@attrs.frozen
class StoreSettings:
    busy_timeout_ms: int = attrs.field(default=5_000, metadata=_r(0, 600_000))
    backups_kept: int = attrs.field(default=3, metadata=_r(0, 100))


@attrs.frozen
class QueueSettings:
    max_concurrent_runs: int = attrs.field(default=0, metadata={**_r(0, 64), "help": "0 = auto"})
    mailbox_capacity: int = attrs.field(default=32, metadata=_r(1, 10_000))
    default_mode: str = attrs.field(default="followup", metadata=_c("followup", "steer", "collect"))
    group_activation: str = attrs.field(default="mention", metadata=_c("mention", "always"))
    dedupe_ttl_s: int = attrs.field(default=600, metadata=_r(1, 86_400))
    dedupe_max_entries: int = attrs.field(default=2_048, metadata=_r(16, 1_000_000))
    retry_max_attempts: int = attrs.field(default=4, metadata=_r(1, 20))
    retry_base_ms: int = attrs.field(default=500, metadata=_r(1, 600_000))
    retry_cap_ms: int = attrs.field(default=60_000, metadata=_r(1, 3_600_000))

    def effective_concurrency(self) -> int:
        return self.max_concurrent_runs or auto_concurrency()


@attrs.frozen
class SchedulerSettings:
    enabled: bool = True
    timezone: str = "UTC"
    max_tasks: int = attrs.field(default=256, metadata=_r(1, 100_000))


@attrs.frozen
class SandboxSettings:
    backend: str = attrs.field(default="none", metadata=_c("none", "podman", "docker"))
    socket: str = ""
    concurrency: int = attrs.field(default=0, metadata={**_r(0, 64), "help": "0 = auto"})
    cpus: float = attrs.field(default=1.0, metadata=_r(0.1, 64))
    memory_mb: int = attrs.field(default=256, metadata=_r(16, 65_536))
    pids: int = attrs.field(default=128, metadata=_r(8, 65_536))
    timeout_s: int = attrs.field(default=120, metadata=_r(1, 3_600))
    output_cap_bytes: int = attrs.field(default=65_536, metadata=_r(1_024, 67_108_864))
    #: runner image tag; empty = the image built from this release (tag carries its content hash)
    image: str = ""
    #: network for runs that do not ask: none, or allow (only the egress allowlist, via the host proxy)
    network: str = attrs.field(default="none", metadata=_c("none", "allow"))
    #: allowlist files (one entry per line); empty = nothing extra mounted / no egress destination
    mount_allowlist: str = attrs.field(default="", metadata={"help": "file; empty = no extra mounts"})
    egress_allowlist: str = attrs.field(default="", metadata={"help": "file; empty = no egress"})
    workspaces_dir: str = attrs.field(default="", metadata={"help": "empty = <data_dir>/workspaces"})
    #: what the runner image carries besides the runner: none, or shell (a static busybox tool set)
    tools: str = attrs.field(default="shell", metadata=_c("none", "shell"))
    tmpfs_mb: int = attrs.field(default=64, metadata=_r(1, 4_096))
    nofile: int = attrs.field(default=1024, metadata=_r(64, 65_536))
    nproc: int = attrs.field(default=4096, metadata=_r(16, 65_536))
    #: keep one paused runner per group ready (faster first byte, costs one idle container)
    warm_pool: bool = False

    def effective_concurrency(self) -> int:
        return self.concurrency or auto_concurrency()


@attrs.frozen
class AgentSettings:
    provider_base_url: str = ""
    provider_api_key: str = attrs.field(default="", metadata={"secret": True})
    model: str = ""
    fallback_models: str = attrs.field(default="", metadata={"help": "comma-separated, tried in order"})
    turn_timeout_s: int = attrs.field(default=180, metadata=_r(1, 3_600))
    max_tool_turns: int = attrs.field(default=8, metadata=_r(1, 100))
    request_timeout_s: int = attrs.field(default=60, metadata=_r(1, 3_600))
    output_cap_bytes: int = attrs.field(default=65_536, metadata=_r(1_024, 67_108_864))

    def fallback_model_list(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.fallback_models.split(",") if m.strip())


@attrs.frozen
class DefenderSettings:
    mode: str = attrs.field(default="enforce", metadata=_c("enforce", "audit_only", "off"))
    review_threshold: float = attrs.field(default=0.5, metadata=_r(0, 1))
    block_threshold: float = attrs.field(default=0.8, metadata=_r(0, 1))
    timeout_ms: int = attrs.field(default=250, metadata=_r(1, 60_000))
    fail_mode: str = attrs.field(default="review", metadata=_c("allow", "review", "block"))
    #: what a failed host-integrity check does: run with exec blocked, or refuse to start
    integrity_policy: str = attrs.field(default="degraded", metadata=_c("degraded", "refuse"))
    integrity_interval_s: int = attrs.field(default=21_600, metadata=_r(60, 604_800))
    integrity_verify_key: str = attrs.field(
        default="", metadata={"help": "Ed25519 public key; empty = unsigned"}
    )


def _ids(value: Any) -> tuple[str, ...]:
    """Ids are strings on the wire (Telegram ids may be given as TOML integers)."""
    return tuple(str(v) for v in value)


@attrs.frozen
class TelegramSettings:
    enabled: bool = False
    bot_token: str = attrs.field(default="", metadata={"secret": True})
    api_base: str = "https://api.telegram.org"
    #: Telegram numeric user ids admitted in any chat
    allow_user_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    #: Telegram chat ids (negative for groups) whose every member is admitted
    allow_chat_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    allow_all: bool = False
    require_mention_in_groups: bool = True
    poll_timeout_s: int = attrs.field(default=30, metadata=_r(0, 50))
    request_timeout_s: float = attrs.field(default=15.0, metadata=_r(1, 300))
    max_message_chars: int = attrs.field(default=4096, metadata=_r(16, 4096))
    send_attempts: int = attrs.field(default=3, metadata=_r(1, 10))
    retry_base_s: float = attrs.field(default=1.0, metadata=_r(0.01, 60))
    retry_cap_s: float = attrs.field(default=30.0, metadata=_r(0.1, 600))


@attrs.frozen
class WhatsAppSettings:
    enabled: bool = False
    bridge_url: str = "ws://127.0.0.1:3001/"
    bridge_token: str = attrs.field(default="", metadata={"secret": True})
    #: sender JIDs (``123@s.whatsapp.net``) admitted in any chat
    allow_sender_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    #: chat JIDs (``...@g.us`` groups) whose every member is admitted
    allow_chat_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    allow_all: bool = False
    require_mention_in_groups: bool = True
    assistant_name: str = "Andy"
    #: False = shared number: outbound gets an ``"<name>: "`` prefix and inbound with it is the bot's own
    has_own_number: bool = True
    reconnect_base_s: float = attrs.field(default=1.0, metadata=_r(0.01, 60))
    reconnect_cap_s: float = attrs.field(default=60.0, metadata=_r(0.1, 3600))
    reconnect_jitter: float = attrs.field(default=0.5, metadata=_r(0, 1))
    outbound_buffer: int = attrs.field(default=256, metadata=_r(1, 100_000))
    send_timeout_s: float = attrs.field(default=30.0, metadata=_r(0.1, 600))
    ping_interval_s: float = attrs.field(default=30.0, metadata=_r(1, 3600))
    max_message_chars: int = attrs.field(default=4096, metadata=_r(16, 65_536))
    max_frame_bytes: int = attrs.field(default=1_048_576, metadata=_r(1_024, 16_777_216))


@attrs.frozen
class WebhookSettings:
    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = attrs.field(default=18790, metadata=_r(0, 65535))
    path: str = "/hooks/inbound"
    secret: str = attrs.field(default="", metadata={"secret": True})
    callback_url: str = ""
    replay_window_s: int = attrs.field(default=300, metadata=_r(1, 3600))
    nonce_cache_size: int = attrs.field(default=4096, metadata=_r(16, 1_000_000))
    max_body_bytes: int = attrs.field(default=65_536, metadata=_r(256, 16_777_216))
    max_message_chars: int = attrs.field(default=65_536, metadata=_r(16, 1_048_576))
    request_timeout_s: float = attrs.field(default=10.0, metadata=_r(0.1, 300))


@attrs.frozen
class WatchdogSettings:
    #: a channel with no sign of life for this long is cancelled and reconnected
    stall_after_s: float = attrs.field(default=120.0, metadata=_r(1, 86_400))
    restart_base_s: float = attrs.field(default=1.0, metadata=_r(0.01, 600))
    restart_cap_s: float = attrs.field(default=300.0, metadata=_r(0.1, 86_400))


@attrs.frozen
class ChannelsSettings:
    telegram: TelegramSettings = attrs.Factory(TelegramSettings)
    whatsapp: WhatsAppSettings = attrs.Factory(WhatsAppSettings)
    webhook: WebhookSettings = attrs.Factory(WebhookSettings)
    watchdog: WatchdogSettings = attrs.Factory(WatchdogSettings)


@attrs.frozen
class PluginsSettings:
    """Plugin sidecars: each enabled name is a directory under ``dir`` holding a ``plugin.toml``."""

    dir: str = attrs.field(default="", metadata={"help": "empty = <data_dir>/plugins"})
    enabled: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    call_timeout_s: float = attrs.field(default=10.0, metadata=_r(0.1, 600))
    restart_base_s: float = attrs.field(default=1.0, metadata=_r(0.01, 600))
    restart_cap_s: float = attrs.field(default=300.0, metadata=_r(0.1, 86_400))


@attrs.frozen
class OtaSettings:
    """Over-the-air updates; empty strings mean "the built-in default" (see ``appliance update --help``)."""

    root: str = "/opt/appliance"
    public_key: str = attrs.field(default="", metadata={"help": "minisign public key file; empty = embedded"})
    restart_command: str = attrs.field(default="", metadata={"help": "empty = systemctl restart appliance"})
    stop_command: str = attrs.field(default="", metadata={"help": "empty = systemctl stop appliance"})
    health_url: str = attrs.field(default="", metadata={"help": "empty = http://127.0.0.1:<port>/ready"})
    trial_deadline_s: int = attrs.field(default=300, metadata=_r(10, 86_400))
    max_boots: int = attrs.field(default=3, metadata=_r(1, 100))


@attrs.frozen
class Settings:
    """All configuration. Top-level keys have no section (``APPLIANCE_DATA_DIR``)."""

    profile: str = "embedded"
    data_dir: str = attrs.field(default="~/.local/share/appliance")
    log_level: str = attrs.field(default="info", metadata=_c("debug", "info", "warning", "error"))
    gateway: GatewaySettings = attrs.Factory(GatewaySettings)
    store: StoreSettings = attrs.Factory(StoreSettings)
    queue: QueueSettings = attrs.Factory(QueueSettings)
    scheduler: SchedulerSettings = attrs.Factory(SchedulerSettings)
    sandbox: SandboxSettings = attrs.Factory(SandboxSettings)
    agent: AgentSettings = attrs.Factory(AgentSettings)
    defender: DefenderSettings = attrs.Factory(DefenderSettings)
    ota: OtaSettings = attrs.Factory(OtaSettings)
    channels: ChannelsSettings = attrs.Factory(ChannelsSettings)
    plugins: PluginsSettings = attrs.Factory(PluginsSettings)
