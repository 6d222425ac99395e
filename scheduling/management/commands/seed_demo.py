from django.core.management.base import BaseCommand

from scheduling.demo import DEMO_PASSWORD, DEMO_USERNAME, create_demo_data


class Command(BaseCommand):
    help = "Creates a demo clinic, a provider login and patients with schedules (idempotent)."

    def handle(self, *args, **options) -> None:
        if create_demo_data():
            self.stdout.write("Demo clinic created with 3 patients and their schedules.")
        else:
            self.stdout.write("Demo clinic already present; left as it is.")
        self.stdout.write(f"Provider login: {DEMO_USERNAME} / {DEMO_PASSWORD}")
