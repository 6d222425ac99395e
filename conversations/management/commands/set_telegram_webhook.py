"""Registers (or removes) the bot's webhook at Telegram: PUBLIC_BASE_URL/telegram/webhook/
with TELEGRAM_WEBHOOK_SECRET as the secret token Telegram sends back with every call."""

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from telegram import Bot
from telegram.error import TelegramError

from conversations.bot.application import ALLOWED_UPDATES


class Command(BaseCommand):
    help = "Point Telegram's webhook for the bot at this site (or remove it with --delete)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", help="The webhook URL; default PUBLIC_BASE_URL + path.")
        parser.add_argument("--delete", action="store_true", help="Remove the webhook.")

    def handle(self, *args, url: str | None = None, delete: bool = False, **options) -> None:
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("TELEGRAM_BOT_TOKEN is not set.")
        if delete:
            asyncio.run(self._call(lambda bot: bot.delete_webhook()))
            self.stdout.write("Webhook removed.")
            return
        if not settings.TELEGRAM_WEBHOOK_SECRET:
            raise CommandError("TELEGRAM_WEBHOOK_SECRET is not set; the webhook would refuse "
                               "every update.")  # fmt: skip
        url = url or (settings.PUBLIC_BASE_URL + reverse("telegram-webhook"))
        if not url.startswith("https://"):
            raise CommandError(f"Telegram calls only https:// webhooks; got {url!r}. Set "
                               "PUBLIC_BASE_URL or pass --url.")  # fmt: skip
        asyncio.run(self._call(lambda bot: bot.set_webhook(
            url=url, secret_token=settings.TELEGRAM_WEBHOOK_SECRET,
            allowed_updates=ALLOWED_UPDATES)))  # fmt: skip
        self.stdout.write(f"Webhook set to {url}.")

    async def _call(self, method) -> None:
        bot = Bot(settings.TELEGRAM_BOT_TOKEN, base_url=f"{settings.TELEGRAM_API_BASE_URL}/bot")
        try:
            async with bot:
                await method(bot)
        except TelegramError as error:
            raise CommandError(f"Telegram refused: {error.message}") from error
