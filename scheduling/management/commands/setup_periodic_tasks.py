from django.core.management.base import BaseCommand

from scheduling.periodic import register_periodic_tasks


class Command(BaseCommand):
    help = "Registers the scheduler's periodic tasks in django-celery-beat (idempotent)."

    def handle(self, *args, **options) -> None:
        for task in register_periodic_tasks():
            state = "enabled" if task.enabled else "disabled by an operator"
            self.stdout.write(f"{task.name}: {task.task} {task.interval} ({state})")
