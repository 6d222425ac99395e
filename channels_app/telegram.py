"""Telegram through python-telegram-bot's Bot, against TELEGRAM_API_BASE_URL."""

import asyncio
import atexit
import logging
import os
import threading
import time
from dataclasses import replace
from datetime import timedelta

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from channels_app.attachments import PHOTO, VOICE, caption_length
from channels_app.base import (
    ChannelAdapter,
    ChannelError,
    Now,
    OutboundMessage,
    PermanentError,
    RecipientBlocked,
    SendResult,
    Slot,
    Timed,
    TransientError,
    internal_error,
    provider_timed,
)
from channels_app.formatting import PART_LENGTH, message_parts, to_plain_text
from channels_app.telegram_request import AiohttpRequest

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = PART_LENGTH["telegram"]


class _Session(threading.local):
    """One event loop and Bot per thread and process, kept so connections are reused.

    Bot is asyncio-only while Celery's prefork tasks are synchronous; a fresh
    asyncio.run() per send would open a new HTTP connection pool every time.
    """

    pid: int = 0
    loop: asyncio.AbstractEventLoop | None = None
    bots: dict[tuple[str, str, float, int], Bot]


_session = _Session()


def _run(coroutine_factory, key: tuple[str, str, float, int]):
    if _session.pid != os.getpid() or _session.loop is None:
        # After a fork the parent's loop and sockets must not be reused.
        _session.pid = os.getpid()
        _session.loop = asyncio.new_event_loop()
        _session.bots = {}
    bot = _session.bots.get(key)
    if bot is None:
        # Settings changed (in tests, a new fake server each time): the old client goes.
        _close_clients()
        token, base_url, timeout, connections = key
        request = AiohttpRequest(connections=connections, timeout=timeout)
        bot = Bot(token, base_url=f"{base_url}/bot", request=request)
        _session.bots[key] = bot
        _session.loop.run_until_complete(_warm_up(bot))
    return _session.loop.run_until_complete(coroutine_factory(bot))


def _close_clients() -> None:
    """Closes this thread's Telegram clients and their connections."""
    if _session.loop is not None and not _session.loop.is_running():
        for bot in _session.bots.values():
            _session.loop.run_until_complete(bot.shutdown())
    _session.bots = {}


# At exit, so that no open connection pool is left for the garbage collector to report.
atexit.register(_close_clients)


async def _warm_up(bot: Bot) -> None:
    """The first request of a process is slow (imports, the client's first connection);
    made before any send, so that no send reaches Telegram late for its rate-limit slot
    and bunched with the punctual ones. A failure here shows up again in the send."""
    try:
        await bot.initialize()
    except TelegramError:
        logger.warning("telegram: getMe failed while preparing the client")


def _seconds(value: int | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramChannel(ChannelAdapter):
    name = "telegram"

    def __init__(self, *, token: str, base_url: str, timeout: float, connections: int = 8) -> None:
        self._key = (token, base_url.rstrip("/"), timeout, connections)

    def send(self, message: OutboundMessage) -> SendResult:
        [timed] = self.send_batch([(message, Now())])
        if isinstance(timed.answer, ChannelError):
            raise timed.answer
        return timed.answer

    def parts(self, message: OutboundMessage) -> list[OutboundMessage]:
        """The attachment first, with the text as its caption when it fits in 1,024
        characters; otherwise the text follows in part(s) of its own, in order."""
        texts = message_parts(self.name, message.text, message.format) if message.text else []
        media = []
        if message.attachment is not None:
            limit = caption_length(self.name, message.attachment.kind) or 0
            fits = len(texts) == 1 and len(to_plain_text(texts[0], message.format)) <= limit
            media = [replace(message, text=texts[0] if fits else "", buttons=())]
            texts = [] if fits else texts
        parts = media + [replace(message, text=text, buttons=(), attachment=None) for text in texts]
        if not parts:
            return []
        return [*parts[:-1], replace(parts[-1], buttons=message.buttons)]

    def send_batch(self, batch: list[tuple[OutboundMessage, Slot]]) -> list[Timed]:
        """All of a batch's sends on one event loop, each at its rate-limit slot, so their
        waits for Telegram's answers overlap."""
        if not self._key[0]:
            error = PermanentError("not_configured", "TELEGRAM_BOT_TOKEN is not set")
            return [Timed(error, 0.0) for _ in batch]

        async def send_all(bot: Bot) -> list[Timed]:
            return list(await asyncio.gather(*(self._send_at(bot, m, s) for m, s in batch)))

        return _run(send_all, self._key)

    async def _send_at(self, bot: Bot, message: OutboundMessage, slot: Slot) -> Timed:
        """base.send_when_due on the event loop."""
        try:
            while (pause := slot.delay()) is not None:
                await asyncio.sleep(pause)
        except ChannelError as error:
            return Timed(error, 0.0)
        started = time.monotonic()
        try:
            answer = await self._send(bot, message)
        except ChannelError as error:
            answer = error
        except Exception:
            answer = internal_error(message)
        return provider_timed(message.channel, answer, started)

    async def _send(self, bot: Bot, message: OutboundMessage) -> SendResult:
        """Sends the message's parts back to back: for one part of a delivery, or a reply
        to a patient (which has no rate-limit slot and is short)."""
        parse_mode = ParseMode.HTML if message.format == "html" else None
        try:
            ids = []
            for part in self.parts(message):
                if part.attachment is not None:
                    sent = await _send_media(bot, part, parse_mode)
                else:
                    sent = await bot.send_message(
                        chat_id=message.address,
                        text=part.text,
                        parse_mode=parse_mode,
                        reply_markup=_keyboard(part.buttons),
                    )
                ids.append(str(sent.message_id))
        except RetryAfter as exc:
            raise TransientError(
                "rate_limited", exc.message, retry_after=_seconds(exc.retry_after)
            ) from exc
        except Forbidden as exc:
            # "bot was blocked by the user", "user is deactivated", ...
            raise RecipientBlocked("forbidden", exc.message) from exc
        except ChatMigrated as exc:
            raise PermanentError("chat_migrated", "the group chat moved to a new id") from exc
        except BadRequest as exc:
            # "chat not found", "can't parse entities", "message is too long", ...
            raise PermanentError("bad_request", exc.message) from exc
        except InvalidToken as exc:
            raise PermanentError("invalid_token", "the bot token was rejected") from exc
        except NetworkError as exc:
            if "too large" in exc.message.lower():
                # HTTP 413: an upload over Telegram's 50 MB; sending it again cannot help.
                raise PermanentError("too_large", exc.message) from exc
            # Timeouts, refused connections and every 5xx answer land here.
            raise TransientError("network", exc.message) from exc
        except TelegramError as exc:
            raise TransientError("telegram_error", exc.message) from exc
        return SendResult(provider_message_id=",".join(ids))


async def _send_media(bot: Bot, part: OutboundMessage, parse_mode: str | None):
    """sendPhoto, sendVoice or sendDocument, uploading the file (multipart/form-data)."""
    attachment = part.attachment
    send = {PHOTO: bot.send_photo, VOICE: bot.send_voice}.get(attachment.kind, bot.send_document)
    return await send(
        part.address,
        attachment.read(),
        caption=part.text or None,
        parse_mode=parse_mode if part.text else None,
        filename=attachment.filename,
        reply_markup=_keyboard(part.buttons),
    )


def _keyboard(buttons: tuple[tuple[str, str], ...]) -> InlineKeyboardMarkup | None:
    """One row of inline buttons; they go on the last part, under the whole text."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in buttons]]
    )
