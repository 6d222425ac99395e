from django.core.management.base import BaseCommand, CommandError

from care_team.preflight import check_postgres, check_redis


class Command(BaseCommand):
    help = "Checks that PostgreSQL and Redis answer; names the URL and the fix if not."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--create-database",
            action="store_true",
            help="Create the database named in DATABASE_URL if it does not exist.",
        )

    def handle(self, *args, **options) -> None:
        problems = [
            p for p in (check_postgres(create_database=options["create_database"]), check_redis())
            if p is not None
        ]  # fmt: skip
        if problems:
            raise CommandError("\n".join(str(p) for p in problems))
        self.stdout.write("PostgreSQL and Redis answer.")
