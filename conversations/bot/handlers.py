"""The bot's handlers: read the update, call a plain function, send its answer."""

import html
import logging

from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from conversations.bot.bridge import note_failure, run_sync
from conversations.bot.commands import handle_other, handle_text
from patients.models import Channel
from scheduling.acknowledgements import acknowledge_press

logger = logging.getLogger(__name__)


def _sender(update: Update) -> tuple[str, str]:
    user = update.effective_user
    return str(update.effective_chat.id), (user.language_code or "") if user else ""


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat_id, language = _sender(update)
    message = update.effective_message
    reply = await run_sync(handle_text, channel=Channel.TELEGRAM, address=chat_id,
                           text=message.text, language_hint=language)  # fmt: skip
    if reply:
        await message.reply_text(reply)


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Photos, voice messages, stickers: we read only text."""
    chat_id, language = _sender(update)
    reply = await run_sync(handle_other, channel=Channel.TELEGRAM, address=chat_id,
                           language_hint=language)  # fmt: skip
    if reply:
        await update.effective_message.reply_text(reply)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    chat_id, _ = _sender(update)
    reply = await run_sync(acknowledge_press, chat_id=chat_id, data=query.data or "")
    await query.answer(reply.toast[:200])
    message = query.message
    if reply.note and isinstance(message, Message) and message.text:
        # The choice is shown under the reminder and the buttons go: one answer per dose.
        await query.edit_message_text(
            f"{message.text_html}\n\n{html.escape(reply.note)}", parse_mode=ParseMode.HTML
        )


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Logs ids and the error's type only: an update holds what the patient wrote."""
    error = context.error
    update_id = update.update_id if isinstance(update, Update) else None
    logger.error("telegram update %s failed: %s", update_id, type(error).__name__,
                 exc_info=not isinstance(error, TelegramError))  # fmt: skip
    if not isinstance(error, TelegramError):
        # Our own work failed (the database was away): process the update again. A failed
        # reply is not retried, or the command it answers would be run twice.
        note_failure(error)
