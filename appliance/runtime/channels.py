"""Chat channels wired to the agent: message in -> defender -> queue/turn -> reply out.

Rules:
- :class:`ChannelBridge` is the channels' :data:`~appliance.channels.InboundHandler`. It only *accepts*:
  it returns once the turn is durably begun (turn row and user message in the store) and sends the reply
  from a separate task, because an adapter's reader awaits the handler (WhatsApp would deadlock waiting
  for its own ``sent`` frame);
- the turn's ``run_id`` is the message's ``idempotency_key``: a redelivered message never runs twice (the
  runtime dedupes by run id) and is answered at most once: every reply owes a row in ``channel_outbox``
  (``pending`` -> ``sent``); a redelivery whose row is ``sent`` is ignored, one whose row is still
  ``pending`` (a crash between turn and reply) gets the stored outcome, and :meth:`ChannelBridge.resume`
  delivers what a crash left pending (a turn cut short is reported failed to the user);
- the defender scores every inbound text: ``block`` writes a quarantine ledger entry (the defender's
  ledger sink), runs no turn, sends a short refusal and raises :class:`~appliance.errors.DefenderBlocked`
  (non-retryable: the adapter acknowledges it); ``review`` is allowed and logged;
- a turn that did not begin within ``begin_timeout_s`` raises :class:`~appliance.errors.Unavailable`
  (retryable: the adapter does not acknowledge, the platform redelivers, the run id dedupes).

:func:`open_channels` starts the configured adapters under the liveness watchdog for ``serve``, and the
enabled plugin sidecars (``plugins.enabled``) under their supervisor: a plugin of kind ``channel`` is a
channel like the others (``plugin:<name>``, chat ids ``plugin:<name>:<chat>``, same bridge, same outbox);
a plugin of kind ``tools`` just runs supervised here: the agent reaches its tools through the fleet this
registers for the gateway state (:class:`~appliance.plugins.PluginToolset`, wired in
:mod:`appliance.runtime.services`); a plugin that fails for good is reported in ``health.plugins.errors``
and stopped, never taking the gateway down.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from appliance.channels import ChannelRouter, InboundMessage, OutboundSender, SentMessage
from appliance.errors import DefenderBlocked, Unavailable
from appliance.log import get_logger
from appliance.store.migrations import OUTBOX_SCHEMA_SQL

if TYPE_CHECKING:
    from appliance.agent import AgentRuntime, TurnOutcome
    from appliance.config.settings import ChannelsSettings, Settings
    from appliance.defender.engine import Defender
    from appliance.gateway.state import GatewayState
    from appliance.plugins import PluginFleet
    from appliance.store import Database

__all__ = [
    "OUTBOX_SCHEMA_SQL",
    "REFUSAL_TEXT",
    "ChannelBridge",
    "OpenChannels",
    "channel_session_key",
    "failure_text",
    "open_channels",
]

log = get_logger("appliance.runtime.channels")

REFUSAL_TEXT = "Sorry, I can't act on that message: it looks like a prompt injection and was quarantined."

#: sent rows older than this are pruned by :meth:`ChannelBridge.resume` (redelivery happens within minutes)
OUTBOX_KEEP_MS = 7 * 24 * 3600 * 1000

_UNSAFE = re.compile(r"[^a-z0-9@._+-]+")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _segment(raw: str) -> str:
    """A session-key segment: lower-case, no whitespace or ``:`` (``plugin:slack`` -> ``plugin-slack``)."""
    seg = _UNSAFE.sub("-", raw.strip().lower())
    return seg if seg.strip("-") else "unknown"  # keep a leading "-": Telegram group ids are negative


def channel_session_key(msg: InboundMessage, agent_id: str = "main") -> str:
    """``agent:<id>:<channel>:direct:<peer>`` or ``...:group:<chat>`` (OpenClaw's per-peer shapes); a
    plugin channel's chat ``plugin:<name>:C1`` is keyed ``agent:<id>:plugin-<name>:direct:c1``."""
    chat = msg.chat_id.removeprefix("tg:").removeprefix("hook:").removeprefix(f"{msg.channel}:")
    kind = "group" if msg.is_group else "direct"
    return f"agent:{agent_id}:{_segment(msg.channel)}:{kind}:{_segment(chat)}"


def failure_text(outcome: TurnOutcome | None) -> str:
    """What the user is told when a turn ended without a reply (never a traceback)."""
    if outcome is None:
        return "Sorry, something went wrong while answering; please try again."
    status = str(outcome.status)
    if status == "timeout":
        return "Sorry, that took too long and was stopped; please try again."
    if status == "aborted":
        return "That request was stopped before it finished."
    detail = f": {outcome.error}" if outcome.error else ""
    return f"Sorry, I could not finish that request{detail}"


class ChannelBridge:
    """The inbound handler for every channel (see the module rules). Call :meth:`resume` once at start."""

    def __init__(
        self,
        *,
        db: Database,
        runtime: Callable[[], Awaitable[AgentRuntime]],
        sender: OutboundSender,
        nursery: trio.Nursery,
        defender: Defender | None = None,
        agent_id: str = "main",
        begin_timeout_s: float = 30.0,
        wall_ms: Callable[[], int] = _wall_ms,
        publish: Callable[[str], Callable[[str, dict[str, Any], bool], None]] | None = None,
    ) -> None:
        self.db = db
        self._runtime = runtime
        self.sender = sender
        self._nursery = nursery
        self.defender = defender
        self.agent_id = agent_id
        self.begin_timeout_s = begin_timeout_s
        self.wall_ms = wall_ms
        #: session key -> event sink for the gateway's subscribers (state.fanout.run_sink); None = nobody
        self._publish = publish
        self._delivering: set[str] = set()
        db.execute(OUTBOX_SCHEMA_SQL)

    # -- inbound -------------------------------------------------------------------------------------

    async def __call__(self, msg: InboundMessage) -> None:
        run_id = msg.idempotency_key
        row = self.db.query_one("SELECT kind, state FROM channel_outbox WHERE run_id = ?", (run_id,))
        if (row is not None and row["state"] == "sent") or run_id in self._delivering:
            log.info("channel_message_duplicate", run_id=run_id, chat_id=msg.chat_id)
            return
        key = channel_session_key(msg, self.agent_id)
        if self.defender is not None:
            await self._screen(msg, key)
        runtime = await self._runtime()
        from appliance.agent import TurnRequest

        if run_id in self._delivering:  # the same message arrived twice concurrently: no await from here
            return  # to ``_delivering.add`` below, so exactly one copy submits and delivers
        self._owe(run_id, msg.chat_id, "turn")
        begun = trio.Event()
        fan = self._publish(key) if self._publish is not None else None

        def sink(event: str, payload: dict[str, Any], droppable: bool) -> None:
            begun.set()  # the first event comes after the turn row and the user message are stored
            if fan is not None:  # clients subscribed to this session (sessions.messages.subscribe, TUI)
                fan(event, payload, droppable)

        request = TurnRequest(session_key=key, message=msg.text, run_id=run_id, agent_id=self.agent_id)
        runtime.submit(request, sink)
        self._delivering.add(run_id)
        self._nursery.start_soon(self._deliver_turn, runtime, run_id, msg.chat_id, begun)
        with trio.move_on_after(self.begin_timeout_s):
            await begun.wait()
        if not begun.is_set():
            raise Unavailable("the agent did not start the turn in time", details={"run_id": run_id})
        log.info("channel_message_accepted", run_id=run_id, chat_id=msg.chat_id, session_id=key)

    async def _screen(self, msg: InboundMessage, key: str) -> None:
        """Raises DefenderBlocked (after owing a refusal) when the defender blocks the text."""
        from appliance.defender import Verdict

        assert self.defender is not None
        decision = await self.defender.check_prompt(msg.text, session=key)
        if decision.verdict is Verdict.BLOCK:
            run_id = msg.idempotency_key
            self._owe(run_id, msg.chat_id, "refusal")
            self._delivering.add(run_id)
            self._nursery.start_soon(self._deliver_text, run_id, msg.chat_id, REFUSAL_TEXT)
            log.warning("channel_message_blocked", run_id=run_id, chat_id=msg.chat_id, session_id=key)
            raise DefenderBlocked(
                "message blocked by the defender", details={"run_id": run_id, "score": decision.score}
            )
        if decision.verdict is Verdict.REVIEW:
            log.warning(
                "channel_message_review",
                run_id=msg.idempotency_key,
                chat_id=msg.chat_id,
                rules=[r.rule for r in decision.reasons],
            )

    # -- outbound ------------------------------------------------------------------------------------

    def _owe(self, run_id: str, chat_id: str, kind: str) -> None:
        self.db.execute(
            "INSERT INTO channel_outbox (run_id, chat_id, kind, state, created_ms) VALUES (?, ?, ?, 'pending', ?)"
            " ON CONFLICT (run_id) DO NOTHING",
            (run_id, chat_id, kind, self.wall_ms()),
        )

    async def _deliver_turn(
        self, runtime: AgentRuntime, run_id: str, chat_id: str, begun: trio.Event | None
    ) -> None:
        try:
            outcome = await runtime.wait(run_id)
        finally:
            if begun is not None:
                begun.set()  # a duplicate run finishes without events: the handler must not wait for them
        if outcome is not None and outcome.ok:
            text = outcome.reply if outcome.reply.strip() else "(the model returned an empty reply)"
        else:
            text = failure_text(outcome)
        await self._deliver_text(run_id, chat_id, text)

    async def _deliver_text(self, run_id: str, chat_id: str, text: str) -> None:
        """Send once; a failed send stays ``pending`` for :meth:`resume` (the next start)."""
        try:
            row = self.db.query_one("SELECT state FROM channel_outbox WHERE run_id = ?", (run_id,))
            if row is not None and row["state"] == "sent":
                return
            try:
                await self.sender.send(chat_id, text)
            except Unavailable as exc:
                log.warning("channel_reply_failed", run_id=run_id, chat_id=chat_id, error=exc.message)
                return
            self.db.execute(
                "UPDATE channel_outbox SET state = 'sent', sent_ms = ? WHERE run_id = ?",
                (self.wall_ms(), run_id),
            )
            log.info("channel_reply_sent", run_id=run_id, chat_id=chat_id, chars=len(text))
        finally:
            self._delivering.discard(run_id)

    async def resume(self) -> int:
        """Deliver replies a crash left owed (finished turns, turns recovered as failed, refusals); returns
        how many were sent. Turns with no record stay pending: their message is redelivered."""
        self.db.execute(
            "DELETE FROM channel_outbox WHERE state = 'sent' AND sent_ms < ?",
            (self.wall_ms() - OUTBOX_KEEP_MS,),
        )
        rows = self.db.query("SELECT run_id, chat_id, kind FROM channel_outbox WHERE state = 'pending'")
        if not rows:
            return 0
        runtime = await self._runtime()
        sent = 0
        for row in rows:
            run_id, chat_id = str(row["run_id"]), str(row["chat_id"])
            if run_id in self._delivering:
                continue
            if row["kind"] == "refusal":
                self._delivering.add(run_id)
                await self._deliver_text(run_id, chat_id, REFUSAL_TEXT)
            else:
                outcome = runtime.lookup(run_id)
                if outcome is None:
                    continue
                self._delivering.add(run_id)
                await self._deliver_turn(runtime, run_id, chat_id, None)
            sent += 1
        log.info("channel_outbox_resumed", sent=sent, pending=len(rows))
        return sent


# -- serve wiring ------------------------------------------------------------------------------------


class _Router(ChannelRouter):
    """The channel router plus plugin channels, which own chat ids by prefix (``plugin:<name>:``)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_prefix: dict[str, Any] = {}

    def add_prefixed(self, prefix: str, adapter: Any) -> None:
        self._by_prefix[prefix] = adapter

    def owns(self, jid: str) -> bool:
        return any(jid.startswith(p) for p in self._by_prefix) or super().owns(jid)

    async def send(self, chat_id: str, text: str) -> SentMessage:
        for prefix, adapter in self._by_prefix.items():
            if chat_id.startswith(prefix):
                return await adapter.send(chat_id, text)  # type: ignore[no-any-return]
        return await super().send(chat_id, text)


@attrs.define
class OpenChannels:
    """What :func:`open_channels` started: the router (outbound by chat id), the bridge, the adapters
    and the plugin fleet (None when no plugin is enabled)."""

    router: ChannelRouter
    bridge: ChannelBridge
    adapters: dict[str, Any] = attrs.Factory(dict)
    plugins: PluginFleet | None = None


def quarantine_path(settings: Settings) -> Path:
    """Where the defender's ledger lives (the same file ``appliance defender`` reads)."""
    return Path(settings.data_dir).expanduser() / "defender" / "quarantine.jsonl"


def build_defender(settings: Settings) -> Defender:
    """The inbound-prompt defender from the settings, writing blocks and reviews to the quarantine ledger."""
    from appliance.defender import FailMode, Mode, PromptPolicy, Thresholds
    from appliance.defender.engine import Defender
    from appliance.defender.ledger import QuarantineLedger

    d = settings.defender
    policy = PromptPolicy(default=Thresholds(review=d.review_threshold, block=d.block_threshold))
    return Defender(
        mode=Mode(d.mode),
        fail_mode=FailMode(d.fail_mode),
        prompt_policy=policy,
        timeout_s=d.timeout_ms / 1000,
        ledger=QuarantineLedger(quarantine_path(settings)),
    )


def open_channels(
    state: GatewayState,
    nursery: trio.Nursery,
    channels: ChannelsSettings | None = None,
    *,
    defender: Defender | None = None,
    max_messages: int | None = None,
) -> OpenChannels:
    """Start every enabled channel (``channels`` defaults to ``state.settings.channels``) under the
    watchdog in ``nursery``, answering through ``state``'s agent runtime (the work services start on
    the first message), and every enabled plugin (see :func:`open_plugins`). Raises ConfigError for a
    channel enabled without its secret, and for a missing or invalid plugin (before starting anything)."""
    from appliance.channels import SqliteOffsetStore
    from appliance.channels.watchdog import Heartbeat, supervise_channel
    from appliance.errors import ConfigError
    from appliance.gateway.methods.chat import runtime_ready

    settings = state.settings
    cfg = channels if channels is not None else settings.channels
    fleet = _load_fleet(settings)  # a broken plugin install stops here, before anything started
    router = _Router()
    bridge = ChannelBridge(
        db=state.db,
        runtime=functools.partial(runtime_ready, state),
        sender=router,
        nursery=nursery,
        defender=defender if defender is not None else build_defender(settings),
        wall_ms=state.wall_ms,
        publish=state.fanout.run_sink,
    )
    opened = OpenChannels(router, bridge, plugins=fleet)

    def supervise(name: str, adapter: Any, stall_after_s: float | None, heartbeat: Heartbeat | None) -> None:
        """Run ``adapter`` in the nursery, under the watchdog when it has a liveness signal."""
        wd = cfg.watchdog

        async def run() -> int:
            return int(await adapter.run(bridge, max_messages=max_messages))

        async def task() -> None:
            try:
                if stall_after_s is None or heartbeat is None:  # a server (webhook): no liveness signal
                    await run()
                    return
                await supervise_channel(
                    name,
                    run,
                    heartbeat,
                    stall_after_s=stall_after_s,
                    restart_base_s=wd.restart_base_s,
                    restart_cap_s=wd.restart_cap_s,
                )
            finally:
                with trio.CancelScope(shield=True):
                    await adapter.aclose()

        opened.adapters[name] = adapter
        nursery.start_soon(task, name=f"channel:{name}")

    from appliance.channels import ChannelKind

    if cfg.telegram.enabled:
        if not cfg.telegram.bot_token:
            raise ConfigError("channels.telegram is enabled without a bot_token", key="channels.telegram")
        from appliance.channels.telegram import TelegramAdapter

        beat = Heartbeat()
        tg = TelegramAdapter(cfg.telegram, offsets=SqliteOffsetStore(state.db.connection), on_alive=beat.beat)
        router.add(ChannelKind.TELEGRAM, tg)
        stall = max(
            cfg.watchdog.stall_after_s, cfg.telegram.poll_timeout_s + cfg.telegram.request_timeout_s + 10
        )
        supervise("telegram", tg, stall, beat)
    if cfg.whatsapp.enabled:
        if not cfg.whatsapp.bridge_token:
            raise ConfigError("channels.whatsapp is enabled without a bridge_token", key="channels.whatsapp")
        from appliance.channels.whatsapp import WhatsAppAdapter

        beat = Heartbeat()
        wa = WhatsAppAdapter(cfg.whatsapp, on_alive=beat.beat)
        router.add(ChannelKind.WHATSAPP, wa)
        stall = max(cfg.watchdog.stall_after_s, cfg.whatsapp.ping_interval_s * 2 + 10)
        supervise("whatsapp", wa, stall, beat)
    if cfg.webhook.enabled:
        if not cfg.webhook.secret:
            raise ConfigError("channels.webhook is enabled without a secret", key="channels.webhook")
        from appliance.channels.webhook import WebhookAdapter

        hook = WebhookAdapter(cfg.webhook)
        router.add(ChannelKind.WEBHOOK, hook)
        supervise("webhook", hook, None, None)
    if fleet is not None:
        open_plugins(
            state, nursery, fleet, bridge=bridge, router=router, opened=opened, max_messages=max_messages
        )
    if opened.adapters:
        nursery.start_soon(_resume, bridge, name="channel-outbox-resume")
    log.info("channels_opened", channels=sorted(opened.adapters))
    return opened


def _load_fleet(settings: Settings) -> PluginFleet | None:
    """The enabled plugins, loaded and checked; None when none is enabled. Raises PluginManifestError."""
    if not settings.plugins.enabled:
        return None
    from appliance.plugins import PluginFleet

    return PluginFleet.from_settings(settings)


def open_plugins(
    state: GatewayState,
    nursery: trio.Nursery,
    fleet: PluginFleet,
    *,
    bridge: ChannelBridge,
    router: _Router,
    opened: OpenChannels,
    max_messages: int | None = None,
) -> None:
    """Start each plugin of ``fleet`` under its supervisor in ``nursery`` and register the fleet for
    ``health``/``status`` (and for the agent's plugin tools, which find it through
    :func:`~appliance.plugins.fleet_for`); a ``channel`` plugin also gets a :class:`PluginChannelAdapter`
    under the watchdog, feeding ``bridge``. When either side fails for good, both stop and the plugin is reported
    in ``health.plugins.errors``."""
    from appliance.channels import Allowlist, Capabilities
    from appliance.channels.plugin_channel import PluginChannelAdapter
    from appliance.channels.watchdog import Heartbeat, supervise_channel
    from appliance.errors import ApplianceError
    from appliance.plugins import PluginKind, register_fleet

    register_fleet(state, fleet)
    wd = state.settings.channels.watchdog
    for name, definition in fleet.definitions.items():
        supervisor = fleet.supervisors[name]
        options = definition.channel
        if definition.kind is not PluginKind.CHANNEL or options is None:
            nursery.start_soon(fleet.run_plugin, name, name=f"plugin:{name}")
            continue
        beat = Heartbeat()
        prefix = f"plugin:{name}:"
        adapter = PluginChannelAdapter(
            name,
            supervisor,
            capabilities=Capabilities(
                groups=True, mentions=True, max_message_chars=options.max_message_chars
            ),
            allowlist=Allowlist.of(
                options.allow_sender_ids, options.allow_chat_ids, allow_all=options.allow_all
            ),
            jid_prefix=prefix,
            require_mention_in_groups=options.require_mention_in_groups,
            poll_timeout_s=options.poll_timeout_s,
            on_alive=beat.beat,
        )
        router.add_prefixed(prefix, adapter)
        opened.adapters[adapter.name] = adapter
        stall = max(wd.stall_after_s, options.poll_timeout_s + state.settings.plugins.call_timeout_s + 10)

        async def run_channel(
            name: str = name,
            adapter: PluginChannelAdapter = adapter,
            beat: Heartbeat = beat,
            stall: float = stall,
        ) -> None:
            async def poll() -> int:
                return await adapter.run(bridge, max_messages=max_messages)

            try:
                async with trio.open_nursery() as inner:

                    async def plugin() -> None:
                        await fleet.run_plugin(name)
                        inner.cancel_scope.cancel()  # the plugin gave up: so does its channel

                    async def channel() -> None:
                        try:
                            await supervise_channel(
                                adapter.name,
                                poll,
                                beat,
                                stall_after_s=stall,
                                restart_base_s=wd.restart_base_s,
                                restart_cap_s=wd.restart_cap_s,
                            )
                        except ApplianceError as exc:  # a non-retryable answer: stop this plugin only
                            fleet.fail(name, f"channel stopped: {exc.message}")
                        inner.cancel_scope.cancel()

                    inner.start_soon(plugin)
                    inner.start_soon(channel)
            finally:
                with trio.CancelScope(shield=True):
                    await adapter.aclose()

        nursery.start_soon(run_channel, name=f"channel:{adapter.name}")
    log.info("plugins_started", plugins=sorted(fleet.definitions))


async def _resume(bridge: ChannelBridge) -> None:
    if bridge.db.scalar("SELECT EXISTS (SELECT 1 FROM channel_outbox WHERE state = 'pending')"):
        await bridge.resume()
