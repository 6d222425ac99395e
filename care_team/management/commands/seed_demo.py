from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from outreach.demo import start_demo_check_ins
from scheduling.demo import DEMO_PASSWORD, DEMO_USERNAME, create_demo_data, demo_organization


class Command(BaseCommand):
    help = (
        "Creates a demo clinic, a provider login and patients with schedules (idempotent), "
        "and starts their companion's daily check-ins, the first due in a minute or two. "
        "Development only: refused unless DJANGO_DEBUG is on."
    )

    def handle(self, *args, **options) -> None:
        # The demo login is demo / demo, written in the README: never on a real site.
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates a login anyone can guess (demo / demo) and runs only with "
                "DJANGO_DEBUG=true (make run sets it); DJANGO_DEBUG is off here."
            )
        if create_demo_data():
            self.stdout.write("Demo clinic created with 3 patients and their schedules.")
        else:
            self.stdout.write("Demo clinic already present; left as it is.")
        plans = start_demo_check_ins(demo_organization())
        self.stdout.write(f"Daily check-ins on for {len(plans)} demo patients (once a day each).")
        self.stdout.write(f"Provider login: {DEMO_USERNAME} / {DEMO_PASSWORD}")
