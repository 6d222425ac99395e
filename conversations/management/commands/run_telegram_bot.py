"""Runs the bot by long polling, for development: no public address needed. Telegram
delivers updates either to a webhook or by polling, never both, so this removes the
webhook first (set_telegram_webhook sets it again). Stop with Ctrl-C."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.bot.application import ALLOWED_UPDATES, build_application


class Command(BaseCommand):
    help = "Run the Telegram bot by long polling (development); Ctrl-C stops it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=int, default=10,
                            help="Seconds Telegram holds each getUpdates call open.")  # fmt: skip

    def handle(self, *args, timeout: int = 10, **options) -> None:
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("TELEGRAM_BOT_TOKEN is not set.")
        self.stdout.write("Polling Telegram for updates; Ctrl-C stops.")
        self.stdout.flush()
        build_application(polling=True).run_polling(
            allowed_updates=ALLOWED_UPDATES, timeout=timeout, close_loop=False
        )
        self.stdout.write("Stopped.")
