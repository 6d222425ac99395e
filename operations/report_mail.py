"""Each organization's daily report, e-mailed to its admins (members with the admin
role and an e-mail address) once per day.

`send_daily_reports` runs every hour and sends yesterday's (UTC) report of each
organization that has not had it: a run missed during an outage is made up by the next,
and a run that repeats sends nothing twice. Which reports went out is remembered in
Redis for three days (a key per organization and day, taken before sending and given
back when the send fails); if Redis lost its data, that day's reports could go again.
"""

import contextlib
import logging
from datetime import date, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone
from redis.exceptions import RedisError

from channels_app.shared_state import redis_client
from operations.reports import DailyReport, daily_reports, report_rows, reports_csv
from patients.models import Membership, Organization, Role

logger = logging.getLogger(__name__)

SENT_KEY = "companion:reports:sent:{day}:{organization_id}"
SENT_KEEP_SECONDS = 3 * 24 * 3600


def admin_addresses(organization_id: int) -> list[str]:
    return sorted(
        set(
            Membership.objects.filter(
                organization_id=organization_id, role=Role.ADMIN, user__is_active=True
            )
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )


def report_email(report: DailyReport, recipients: list[str]) -> EmailMessage:
    summary = report_rows(report)[0]
    lines = [
        f"Daily report of {report.organization_name} for {report.day} (UTC).",
        "",
        *(
            f"{name.replace('_', ' ')}: {_shown(summary[name])}"
            for name in summary
            if name not in ("date", "organization", "channel")
        ),
        "",
        "The attached CSV has the figures per channel. Aggregates only: no patient appears.",
    ]
    mail = EmailMessage(
        subject=f"Daily report: {report.organization_name}, {report.day}",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    mail.attach(
        f"daily-report-{report.organization_slug}-{report.day}.csv",
        reports_csv([report]),
        "text/csv",
    )
    return mail


def send_daily_reports(*, day: date | None = None) -> int:
    """Sends the day's report (yesterday's by default) to each organization's admins
    that has not had it; returns how many e-mails went out."""
    day = day or timezone.now().date() - timedelta(days=1)
    organizations = list(Organization.objects.order_by("pk"))
    sent = 0
    for report in daily_reports(organizations, day):
        recipients = admin_addresses(report.organization_id)
        if recipients and _send_once(report, recipients):
            sent += 1
    logger.info("daily reports for %s: %d sent", day, sent)
    return sent


def _send_once(report: DailyReport, recipients: list[str]) -> bool:
    key = SENT_KEY.format(day=report.day, organization_id=report.organization_id)
    try:
        if not redis_client().set(key, "1", nx=True, ex=SENT_KEEP_SECONDS):
            return False
    except RedisError:
        logger.warning(
            "daily report of organization %s left for the next run: Redis does not answer",
            report.organization_id,
        )
        return False
    try:
        report_email(report, recipients).send()
    except Exception as exc:
        # Given back, so the next run tries again; a mail server that refused is only
        # logged (the other clinics' reports still go), anything else is raised.
        with contextlib.suppress(RedisError):
            redis_client().delete(key)
        if not isinstance(exc, OSError):  # smtplib's errors are OSErrors
            raise
        logger.warning(
            "daily report of organization %s not sent (%s); tried again next run",
            report.organization_id,
            type(exc).__name__,
        )
        return False
    logger.info(
        "daily report of organization %s sent to %d admins", report.organization_id, len(recipients)
    )
    return True


def _shown(value) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)
