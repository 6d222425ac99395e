from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from patients.provisioning import provider_create


class Command(BaseCommand):
    help = (
        "Creates (or finds) a provider user in an organization and prints their API token "
        "on stdout. The user has no password: `manage.py changepassword` gives them one "
        "for the admin. Idempotent; --admin promotes, nothing demotes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("organization_slug", help="e.g. clinic-a; created if missing")
        parser.add_argument("username")
        parser.add_argument("--admin", action="store_true", help="the organization's admin")

    def handle(self, *args, **options) -> None:
        try:
            provider = provider_create(
                organization_slug=options["organization_slug"],
                username=options["username"],
                admin=options["admin"],
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        state = "created" if provider.created else "already present"
        # Only the token on stdout, so `TOKEN=$(manage.py create_provider ...)` works.
        self.stderr.write(
            f"User {provider.user.username} ({state}) is {provider.role} in "
            f"{provider.organization.slug}. Use: Authorization: Token <key>"
        )
        self.stdout.write(provider.token)
