from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    """What patients use: the bot's commands and buttons, the inbound webhooks of every
    platform, provider status callbacks, and the web inbox page."""

    name = "conversations"
