from django.core.management.base import BaseCommand

from scheduling.attachments import attachments_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypts every attachment file with the first key of FIELD_ENCRYPTION_KEYS (and "
        "encrypts files stored before encryption). rotate_encryption_key runs it too."
    )

    def handle(self, *args, **options) -> None:
        rewritten, already = attachments_reencrypt()
        self.stdout.write(
            f"attachments: {rewritten} re-encrypted, {already} already with the newest key"
        )
