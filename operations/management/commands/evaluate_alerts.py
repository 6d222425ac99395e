"""One evaluation of the alert rules, from outside Celery.

Beat runs the evaluation on the scheduler queue, so when Beat or every scheduler worker
is down nothing evaluates the rules that would say so. Run this from cron or a
Kubernetes CronJob as well (every few minutes): evaluations running at once are safe,
one notice per incident and target still goes (operations/alerting.py).
"""

from django.core.management.base import BaseCommand

from operations.alerting import evaluate_alerts


class Command(BaseCommand):
    help = "Evaluates the alert rules once: opens and resolves incidents, sends notices."

    def handle(self, *args, **options) -> None:
        result = evaluate_alerts()
        self.stdout.write(
            f"opened {len(result.opened)}, resolved {len(result.resolved)}, notices sent "
            f"{result.notices_sent}, failed {result.notices_failed}"
            + (
                f"; not evaluated: {', '.join(result.skipped_rules)}"
                if result.skipped_rules
                else ""
            )
        )
