"""The Telegram bot: one python-telegram-bot Application against TELEGRAM_API_BASE_URL,
its handlers registered in one place, run two ways:

- webhook: Telegram POSTs to /telegram/webhook/, the view stores the update and a Celery
  task calls process_update (conversations.inbound.inbound_process);
- long polling: manage.py run_telegram_bot, for development.

On the webhook path each worker process keeps one initialized Application on an event
loop in a background thread (one getMe per process, reused connections); see bridge.py
for how its handlers reach the database.
"""

import asyncio
import logging
import os
import queue
import threading

from django.conf import settings
from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, MessageHandler, filters
from telegram.request import HTTPXRequest

from conversations.bot import handlers
from conversations.bot.bridge import bind, serve_until_done

logger = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query"]
PROCESS_TIMEOUT_SECONDS = 120  # under Celery's task time limit (300 s)


class UpdateFailed(Exception):
    """Our own work for an update failed; it should be processed again."""


def build_application(*, polling: bool = False) -> Application:
    timeout = settings.TELEGRAM_TIMEOUT_SECONDS
    base = settings.TELEGRAM_API_BASE_URL
    builder = (
        Application.builder()
        .token(settings.TELEGRAM_BOT_TOKEN)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .request(HTTPXRequest(connect_timeout=timeout, read_timeout=timeout,
                              write_timeout=timeout, pool_timeout=timeout))
    )  # fmt: skip
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    register_handlers(application)
    return application


def register_handlers(application: Application) -> None:
    """The same handlers for both ways of running. Only private chats: a group is no
    place for a patient's reminders, so the bot says nothing there."""
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE  # edits are not re-run
    application.add_handler(MessageHandler(private & filters.TEXT, handlers.on_text))
    application.add_handler(MessageHandler(private & ~filters.TEXT, handlers.on_other))
    application.add_handler(CallbackQueryHandler(handlers.on_button))
    application.add_error_handler(handlers.on_error)


def process_update(payload: dict) -> None:
    """Processes one update (Telegram's JSON) with the handlers, in this thread's turn.
    Raises UpdateFailed when our own work failed, so the caller can try again."""
    runner = _runner()
    application = runner.application()
    work: queue.SimpleQueue = queue.SimpleQueue()
    failures: list[BaseException] = []

    async def process() -> None:
        bind(work, failures)
        await application.process_update(Update.de_json(payload, application.bot))

    future = asyncio.run_coroutine_threadsafe(process(), runner.loop)
    serve_until_done(work, future, PROCESS_TIMEOUT_SECONDS)
    if failures:
        names = ", ".join(sorted({type(error).__name__ for error in failures}))
        raise UpdateFailed(names) from failures[0]


class _Runner:
    """An event loop in a daemon thread, and the initialized Application per bot token
    and base URL (tests point each one at a fake server of their own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._applications: dict[tuple[str, str], Application] = {}
        threading.Thread(target=self.loop.run_forever, name="telegram-bot", daemon=True).start()

    def application(self) -> Application:
        key = (settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_API_BASE_URL)
        with self._lock:
            application = self._applications.get(key)
            if application is None:
                application = build_application()
                initialized = asyncio.run_coroutine_threadsafe(application.initialize(), self.loop)
                initialized.result(timeout=PROCESS_TIMEOUT_SECONDS)
                self._applications[key] = application
            return application


_state: dict[str, _Runner] = {}
_state_lock = threading.Lock()


def _runner() -> _Runner:
    with _state_lock:
        runner = _state.get("runner")
        if runner is None or runner.pid != os.getpid():
            # After a fork (Celery's prefork pool) the parent's loop thread is gone.
            runner = _state["runner"] = _Runner()
        return runner
