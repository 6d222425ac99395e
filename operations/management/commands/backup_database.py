from django.core.management.base import BaseCommand, CommandError

from operations.backups import BackupError, back_up_and_rotate, list_backups


class Command(BaseCommand):
    help = (
        "Dumps the database (pg_dump, custom format, compressed) into the backup storage "
        "(BACKUP_DIR or the S3 bucket), then deletes old backups (BACKUP_KEEP_COUNT, "
        "BACKUP_KEEP_DAYS). --list shows the backups kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--list", action="store_true", help="List the backups, newest first.")

    def handle(self, *args, **options):
        if options["list"]:
            for backup in list_backups():
                self.stdout.write(f"{backup.name}\t{backup.taken_at:%Y-%m-%d %H:%M:%S} UTC")
            return
        try:
            result = back_up_and_rotate()
        except BackupError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Backup {result['backup']} written ({result['bytes']} bytes); "
            f"{result['deleted']} old backups deleted."
        )
