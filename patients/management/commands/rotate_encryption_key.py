from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError

from patients.encryption import new_key
from patients.key_rotation import BATCH, rotate_all


class Command(BaseCommand):
    help = (
        "Re-encrypts every encrypted value with the first key of FIELD_ENCRYPTION_KEYS (and "
        "encrypts rows written before encryption), in batches, while the system runs. "
        "--new-key prints a fresh key to put in front of the list first."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--new-key", action="store_true", help="print a new key and stop")
        parser.add_argument("--batch", type=int, default=BATCH, help="rows per transaction")

    def handle(self, *args, **options) -> None:
        if options["new_key"]:
            self.stdout.write(new_key())
            return
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1.")
        try:
            results = rotate_all(batch=options["batch"])
        except RuntimeError as error:
            raise CommandError(str(error)) from error
        for done in results:
            self.stdout.write(
                f"{done.table}.{done.column}: {done.rewritten} re-encrypted, "
                f"{done.already} already with the newest key"
            )
        # Files are kept by an app above this one; its command is called by name.
        if "rotate_attachment_key" in get_commands():
            call_command("rotate_attachment_key", stdout=self.stdout)
        self.stdout.write("Done: the keys after the first may now be removed.")
