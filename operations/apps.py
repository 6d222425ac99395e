from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Running the system: metrics, alerts and incidents, the system's jobs and their
    history, retention, backups and reports. Above the companion's jobs and below the
    surfaces, so it reads every layer's state and no layer below depends on it."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from operations import signals  # noqa: F401 - connects the job history's receivers
        from operations.job_types import load_job_types

        load_job_types()
