"""``appliance channel list | telegram | whatsapp | webhook``: run one channel with an echo handler.

For operators checking a bot token or a bridge before wiring the agent: every admitted message is
answered ``echo: <text>``; ``--max-messages N`` stops after N (bounded acceptance runs). Secrets come
from the environment (``APPLIANCE_TELEGRAM_BOT_TOKEN``, ``APPLIANCE_WHATSAPP_BRIDGE_TOKEN``,
``APPLIANCE_WEBHOOK_SECRET``) or the flags; offsets live in memory (the real store is the gateway's).
The lead wires :func:`add_channel_commands` into the top-level parser; handlers return exit codes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["add_channel_commands", "main"]


def add_channel_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``channel`` and its subcommands on the top-level ``subparsers``."""
    channel = subparsers.add_parser("channel", help="list channels or run one with an echo handler")
    sub = channel.add_subparsers(dest="channel_command", metavar="SUBCOMMAND")
    sub.required = True

    lst = sub.add_parser("list", help="channels and their capabilities")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=_cmd_list)

    def bounded(p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-messages", type=int, default=None, help="stop after N accepted messages")
        p.add_argument("--no-mention-gating", action="store_true", help="answer in groups without a mention")
        p.add_argument("--allow-all", action="store_true", help="admit every sender (testing only)")

    tg = sub.add_parser("telegram", help="long-poll a Telegram bot and echo")
    tg.add_argument("--token", help="bot token (default: $APPLIANCE_TELEGRAM_BOT_TOKEN)")
    tg.add_argument("--api-base", default="https://api.telegram.org")
    tg.add_argument("--allow-user", action="append", default=[], help="Telegram user id (repeatable)")
    tg.add_argument("--allow-chat", action="append", default=[], help="Telegram chat id (repeatable)")
    tg.add_argument("--poll-timeout", type=int, default=30)
    bounded(tg)
    tg.set_defaults(handler=_cmd_telegram)

    wa = sub.add_parser("whatsapp", help="connect to a WhatsApp bridge and echo")
    wa.add_argument("--url", default="ws://127.0.0.1:3001/")
    wa.add_argument("--token", help="bridge token (default: $APPLIANCE_WHATSAPP_BRIDGE_TOKEN)")
    wa.add_argument("--allow-sender", action="append", default=[], help="sender JID (repeatable)")
    wa.add_argument("--allow-chat", action="append", default=[], help="chat JID (repeatable)")
    bounded(wa)
    wa.set_defaults(handler=_cmd_whatsapp)

    hook = sub.add_parser("webhook", help="serve the signed inbound webhook and echo to the callback")
    hook.add_argument("--bind", default="127.0.0.1")
    hook.add_argument("--port", type=int, default=18790)
    hook.add_argument("--path", default="/hooks/inbound")
    hook.add_argument("--secret", help="HMAC secret (default: $APPLIANCE_WEBHOOK_SECRET)")
    hook.add_argument("--callback-url", default="")
    hook.add_argument("--max-messages", type=int, default=None, help="stop after N accepted messages")
    hook.set_defaults(handler=_cmd_webhook)


def _cmd_list(args: argparse.Namespace) -> int:
    import attrs

    from appliance.channels.registry import CHANNEL_DESCRIPTORS

    rows = [
        {"name": str(k), "implemented": d.implemented, "notes": d.notes, **attrs.asdict(d.capabilities)}
        for k, d in CHANNEL_DESCRIPTORS.items()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            state = "ready" if r["implemented"] else "descriptor only"
            print(f"{r['name']:<9} {state:<16} max {r['max_message_chars']:>6} chars  {r['notes']}")
    return 0


def _secret(flag: str | None, env: str) -> str:
    from appliance.errors import ConfigError

    value = flag or os.environ.get(env, "")
    if not value:
        raise ConfigError(f"missing secret: pass the flag or set ${env}")
    return value


async def _echo_run(
    make_adapter: Callable[[Callable[[], None]], Any], max_messages: int | None, stall_after_s: float | None
) -> int:
    """Accept into a bounded channel, reply from one task in order (as the agent side does: a handler
    only accepts; the WhatsApp reader awaits the handler, so it must not await a confirmed send). With
    ``max_messages`` we stop once that many replies were *sent*, so the link stays up until then.
    Polling channels run under the liveness watchdog (``stall_after_s``)."""
    import trio

    from appliance.channels.base import InboundMessage
    from appliance.channels.watchdog import Heartbeat, supervise_channel

    heartbeat = Heartbeat()
    adapter = make_adapter(heartbeat.beat)
    send_ch, recv_ch = trio.open_memory_channel[InboundMessage](16)
    answered = 0
    try:
        async with trio.open_nursery() as nursery:

            async def echo(msg: InboundMessage) -> None:
                await send_ch.send(msg)

            async def reply() -> None:
                nonlocal answered
                async for msg in recv_ch:
                    await adapter.send(msg.chat_id, f"echo: {msg.text}")
                    answered += 1
                    if max_messages is not None and answered >= max_messages:
                        nursery.cancel_scope.cancel()

            async def run() -> int:
                return int(await adapter.run(echo))

            nursery.start_soon(reply)
            if stall_after_s is None:
                nursery.start_soon(run)
            else:
                nursery.start_soon(
                    functools.partial(
                        supervise_channel, adapter.name, run, heartbeat, stall_after_s=stall_after_s
                    )
                )
    finally:
        await adapter.aclose()
    print(json.dumps({"accepted": answered}))
    return 0


def _cmd_telegram(args: argparse.Namespace) -> int:
    import trio

    from appliance.channels.offsets import MemoryOffsetStore
    from appliance.channels.settings import TelegramSettings
    from appliance.channels.telegram import TelegramAdapter

    settings = TelegramSettings(
        enabled=True,
        bot_token=_secret(args.token, "APPLIANCE_TELEGRAM_BOT_TOKEN"),
        api_base=args.api_base,
        allow_user_ids=tuple(args.allow_user),
        allow_chat_ids=tuple(args.allow_chat),
        allow_all=args.allow_all,
        require_mention_in_groups=not args.no_mention_gating,
        poll_timeout_s=args.poll_timeout,
    )
    offsets = MemoryOffsetStore()
    stall = settings.poll_timeout_s + settings.request_timeout_s + 30.0
    return trio.run(
        _echo_run,
        lambda alive: TelegramAdapter(settings, offsets=offsets, on_alive=alive),
        args.max_messages,
        stall,
    )


def _cmd_whatsapp(args: argparse.Namespace) -> int:
    import trio

    from appliance.channels.settings import WhatsAppSettings
    from appliance.channels.whatsapp import WhatsAppAdapter

    settings = WhatsAppSettings(
        enabled=True,
        bridge_url=args.url,
        bridge_token=_secret(args.token, "APPLIANCE_WHATSAPP_BRIDGE_TOKEN"),
        allow_sender_ids=tuple(args.allow_sender),
        allow_chat_ids=tuple(args.allow_chat),
        allow_all=args.allow_all,
        require_mention_in_groups=not args.no_mention_gating,
    )
    stall = settings.ping_interval_s * 2 + 10.0
    return trio.run(
        _echo_run, lambda alive: WhatsAppAdapter(settings, on_alive=alive), args.max_messages, stall
    )


def _cmd_webhook(args: argparse.Namespace) -> int:
    import trio

    from appliance.channels.settings import WebhookSettings
    from appliance.channels.webhook import WebhookAdapter

    settings = WebhookSettings(
        enabled=True,
        bind=args.bind,
        port=args.port,
        path=args.path,
        secret=_secret(args.secret, "APPLIANCE_WEBHOOK_SECRET"),
        callback_url=args.callback_url,
    )
    return trio.run(_echo_run, lambda alive: WebhookAdapter(settings), args.max_messages, None)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m appliance.channels.cli ...`` runs the same commands without the top-level CLI."""
    from appliance.errors import ApplianceError

    parser = argparse.ArgumentParser(prog="appliance")
    add_channel_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ApplianceError as exc:
        print(f"appliance: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)


if __name__ == "__main__":
    sys.exit(main())
