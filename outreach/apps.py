from django.apps import AppConfig


class OutreachConfig(AppConfig):
    """The companion's own initiative: daily check-ins and follow-ups."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "outreach"
    verbose_name = "Companion outreach"

    def ready(self) -> None:
        from outreach import plans

        plans.connect()
