from django.core.management.base import BaseCommand, CommandError

from operations.backups import BackupError, restore_backup


class Command(BaseCommand):
    help = (
        "Restores a backup (a name from `backup_database --list`) into another, empty "
        "database: --into takes a database name on the same server, or a postgres:// URL. "
        "Create it first (createdb); the database this site runs on is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The backup's name.")
        parser.add_argument("--into", required=True, help="A database name or postgres:// URL.")

    def handle(self, *args, name: str, into: str, **options):
        try:
            target = restore_backup(name, into=into)
        except BackupError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Backup {name} restored into database {target.name}.")
