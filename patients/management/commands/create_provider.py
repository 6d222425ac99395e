import getpass
import sys
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from patients.provisioning import provider_create


class Command(BaseCommand):
    help = (
        "Creates (or finds) a provider user in an organization. --new-token issues an API "
        "token and prints it on stdout (the only time it is shown: only its hash is kept); "
        "--rotate does the same and revokes their other tokens. --password-file or "
        "--prompt-password gives them a password for the admin and the web UI (otherwise "
        "a new user has none). Idempotent; --admin promotes, nothing demotes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("organization_slug", help="e.g. clinic-a; created if missing")
        parser.add_argument("username")
        parser.add_argument("--admin", action="store_true", help="the organization's admin")
        token = parser.add_mutually_exclusive_group()
        token.add_argument("--new-token", action="store_true", help="issue an API token")
        token.add_argument(
            "--rotate", action="store_true", help="issue an API token, revoke the others"
        )
        given = parser.add_mutually_exclusive_group()
        given.add_argument("--password-file", help="a file holding the password ('-': stdin)")
        given.add_argument("--prompt-password", action="store_true", help="ask for it, twice")

    def handle(self, *args, **options) -> None:
        try:
            provider = provider_create(
                organization_slug=options["organization_slug"],
                username=options["username"],
                admin=options["admin"],
                password=self._password(options),
                new_token=options["new_token"] or options["rotate"],
                revoke_other_tokens=options["rotate"],
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        state = "created" if provider.created else "already present"
        self.stderr.write(
            f"User {provider.user.username} ({state}) is {provider.role} in "
            f"{provider.organization.slug}."
        )
        if provider.token is None:
            self.stderr.write("No API token issued (--new-token issues one).")
            return
        # Only the token on stdout, so `TOKEN=$(manage.py create_provider ...)` works.
        self.stderr.write(
            f"API token issued, valid for {settings.API_TOKEN_DAYS} days; it is not shown "
            "again. Use: Authorization: Token <key>"
        )
        self.stdout.write(provider.token)

    def _password(self, options) -> str | None:
        """Never on the command line, where the shell history and `ps` would keep it."""
        if options["prompt_password"]:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The two passwords differ.")
            return password
        path = options["password_file"]
        if path is None:
            return None
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except OSError as error:
            raise CommandError(f"Cannot read the password file: {error.strerror}") from error
        return text.rstrip("\r\n")
