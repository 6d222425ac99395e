from django.apps import AppConfig
from django.db.models.signals import post_delete


class SchedulingConfig(AppConfig):
    name = "scheduling"

    def ready(self) -> None:
        from scheduling.attachments import delete_file_with_its_row
        from scheduling.models import Attachment

        post_delete.connect(delete_file_with_its_row, sender=Attachment)
