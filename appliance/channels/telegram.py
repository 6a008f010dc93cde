"""Telegram channel: Bot API long polling (``getUpdates``) and ``sendMessage``, over httpx on trio.

Rules (the sans-IO parts live in :mod:`appliance.channels.telegram_wire`):
- the offset is loaded from the :class:`~appliance.channels.offsets.OffsetStore` at start and advanced
  one update at a time, *after* the handler accepted it (or after the update was gated out); updates
  below the stored offset are skipped, so one is never handed over twice in a process and never skipped;
- a handler that raises a retryable error (:class:`~appliance.errors.Unavailable`, queue full) leaves
  the update unacknowledged; the loop backs off and polls again from the same offset. A non-retryable
  :class:`~appliance.errors.ApplianceError` (blocked, invalid) is a final outcome: logged and
  acknowledged, so a poison message cannot wedge the channel;
- network failures and 5xx/429 answers back off with jitter (``retry_after`` honoured); 401/404 on the
  token raise :class:`ChannelNotLinked` (a bad token does not fix itself);
- httpx is imported lazily, on the first request.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
import trio

from appliance.channels.backoff import Backoff
from appliance.channels.base import (
    Allowlist,
    Capabilities,
    ChannelNotLinked,
    ChannelSendFailed,
    InboundHandler,
    SentMessage,
    split_message,
)
from appliance.channels.offsets import OffsetStore
from appliance.channels.settings import TelegramSettings
from appliance.channels.telegram_wire import BotIdentity, Gate, TelegramApiError, parse_update, unwrap_result
from appliance.errors import ApplianceError, Unavailable
from appliance.log import get_logger

__all__ = ["TELEGRAM_CAPABILITIES", "ChannelNotLinked", "TelegramAdapter"]

log = get_logger("appliance.channels.telegram")

TELEGRAM_CAPABILITIES = Capabilities(
    text=True, media=True, groups=True, mentions=True, reactions=True, edits=True, max_message_chars=4096
)


class TelegramAdapter:
    """One bot. ``run`` long-polls until cancelled or ``max_messages`` were accepted; ``send`` is safe to
    call concurrently with ``run``."""

    name = "telegram"

    def __init__(
        self,
        settings: TelegramSettings,
        *,
        offsets: OffsetStore,
        on_alive: Callable[[], None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.capabilities = attrs.evolve(TELEGRAM_CAPABILITIES, max_message_chars=settings.max_message_chars)
        self._offsets = offsets
        self._on_alive = on_alive or (lambda: None)
        self._rand = rand
        self._allow = Allowlist.of(
            settings.allow_user_ids, settings.allow_chat_ids, allow_all=settings.allow_all
        )
        self._client: Any = None
        self._bot: BotIdentity | None = None

    # -- Bot API calls -------------------------------------------------------------------------------

    def _http(self) -> Any:
        if self._client is None:
            import httpx  # lazy: not needed to start serving

            self._client = httpx.AsyncClient(timeout=self.settings.request_timeout_s)
        return self._client

    async def _call(self, method: str, params: dict[str, Any], *, timeout_s: float | None = None) -> Any:
        """POST one Bot API method; returns ``result``. Raises TelegramApiError or Unavailable."""
        import httpx

        url = f"{self.settings.api_base.rstrip('/')}/bot{self.settings.bot_token}/{method}"
        try:
            resp = await self._http().post(
                url, json=params, timeout=timeout_s or self.settings.request_timeout_s
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"telegram {method}: {type(exc).__name__}", details={"method": method}) from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        try:
            return unwrap_result(resp.status_code, body)
        except TelegramApiError as exc:
            if exc.error_code in (401, 404) and method in ("getMe", "getUpdates"):
                raise ChannelNotLinked("telegram rejected the bot token", details={"method": method}) from exc
            raise

    async def identity(self) -> BotIdentity:
        """``getMe`` once per adapter: the bot id keys the offset, the username drives mention gating."""
        if self._bot is None:
            me = await self._call("getMe", {})
            self._bot = BotIdentity(int(me["id"]), str(me.get("username", "")))
        return self._bot

    # -- inbound -------------------------------------------------------------------------------------

    async def run(self, handler: InboundHandler, *, max_messages: int | None = None) -> int:
        """Long-poll and hand admitted messages to ``handler``; returns how many it accepted."""
        backoff = Backoff(self.settings.retry_base_s, self.settings.retry_cap_s, 0.5, self._rand)
        accepted = 0
        bot: BotIdentity | None = None
        while max_messages is None or accepted < max_messages:
            try:
                if bot is None:
                    bot = await self.identity()
                key = f"telegram:{bot.bot_id}"
                accepted += await self._poll_once(bot, key, handler, max_messages, accepted)
                backoff.reset()
            except (Unavailable, TelegramApiError) as exc:
                if isinstance(exc, ChannelNotLinked):
                    raise
                delay = backoff.next_delay()
                if isinstance(exc, TelegramApiError) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.warning("telegram_poll_failed", error=str(exc), retry_in_s=round(delay, 3))
                await trio.sleep(delay)
        return accepted

    async def _poll_once(
        self, bot: BotIdentity, key: str, handler: InboundHandler, max_messages: int | None, done: int
    ) -> int:
        offset = self._offsets.load(key)
        params: dict[str, Any] = {"timeout": self.settings.poll_timeout_s, "allowed_updates": ["message"]}
        if offset is not None:
            params["offset"] = offset
        updates = await self._call(
            "getUpdates", params, timeout_s=self.settings.poll_timeout_s + self.settings.request_timeout_s
        )
        self._on_alive()
        accepted = 0
        for update in sorted(
            (u for u in updates if isinstance(u, dict) and isinstance(u.get("update_id"), int)),
            key=lambda u: int(u["update_id"]),
        ):
            uid = int(update["update_id"])
            if offset is not None and uid < offset:
                log.info("telegram_update_duplicate", update_id=uid)
                continue
            parsed = parse_update(
                update,
                bot=bot,
                allowlist=self._allow,
                require_mention_in_groups=self.settings.require_mention_in_groups,
            )
            if parsed.gate is Gate.ADMIT and parsed.message is not None:
                try:
                    await handler(parsed.message)  # Unavailable leaves the update unacknowledged
                except ApplianceError as exc:
                    if exc.retryable:
                        raise
                    # refused for good (blocked, invalid): a final outcome, or it would come back forever
                    log.warning(
                        "telegram_message_refused", update_id=uid, code=str(exc.code), error=exc.message
                    )
                else:
                    accepted += 1
                    log.info("telegram_message_accepted", update_id=uid, chat_id=parsed.message.chat_id)
            else:
                log.info(
                    "telegram_update_skipped",
                    update_id=uid,
                    reason=str(parsed.gate),
                    chat_id=parsed.message.chat_id if parsed.message else None,
                )
            offset = uid + 1
            self._offsets.advance(key, offset)
            if max_messages is not None and done + accepted >= max_messages:
                break
        return accepted

    # -- outbound ------------------------------------------------------------------------------------

    async def send(self, chat_id: str, text: str) -> SentMessage:
        """Send ``text`` to ``tg:<id>``, split at ``max_message_chars``; raises ChannelSendFailed."""
        target = chat_id.removeprefix("tg:")
        ids: list[str] = []
        for part in split_message(text, self.capabilities.max_message_chars):
            if not part.strip():
                continue
            result = await self._send_part(target, part)
            ids.append(str(result.get("message_id", "")) if isinstance(result, dict) else "")
        return SentMessage(chat_id, tuple(ids))

    async def _send_part(self, target: str, part: str) -> Any:
        backoff = Backoff(self.settings.retry_base_s, self.settings.retry_cap_s, 0.5, self._rand)
        last: Exception | None = None
        for _ in range(self.settings.send_attempts):
            try:
                return await self._call("sendMessage", {"chat_id": _chat(target), "text": part})
            except TelegramApiError as exc:
                last = exc
                if exc.error_code != 429 and exc.error_code < 500:
                    break
                delay = max(backoff.next_delay(), exc.retry_after or 0.0)
            except Unavailable as exc:
                last = exc
                delay = backoff.next_delay()
            log.warning("telegram_send_retry", error=str(last), retry_in_s=round(delay, 3))
            await trio.sleep(delay)
        raise ChannelSendFailed(
            f"telegram sendMessage failed: {last}", details={"chat_id": f"tg:{target}"}
        ) from last

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _chat(target: str) -> int | str:
    try:
        return int(target)
    except ValueError:
        return target  # @channelusername
