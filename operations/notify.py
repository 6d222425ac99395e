"""Notices to operators: e-mail, a Telegram chat of theirs, and a generic JSON webhook.

Each target is on when its setting is given (ALERT_EMAILS, ALERT_TELEGRAM_CHAT_ID,
ALERT_WEBHOOK_URL). `send_notice` never raises: it answers (ok, detail), and the detail
is an HTTP status or an error class, never a URL, since a webhook's URL and the bot's
token are secrets. Every call waits at most ALERT_NOTIFY_TIMEOUT_SECONDS.

The webhook's body carries `text` (what Slack's and Teams' incoming webhooks show) and,
for PagerDuty-style receivers, `event_action` ("trigger" / "resolve") with a `dedup_key`
that stays the same for both notices of one incident.
"""

import logging
import smtplib

import requests
from django.conf import settings
from django.core.mail import send_mail

from operations.models import Incident, Notice

logger = logging.getLogger(__name__)


def configured_targets() -> list[str]:
    targets = []
    if settings.ALERT_EMAILS:
        targets.append("email")
    if settings.ALERT_TELEGRAM_CHAT_ID and settings.ALERT_TELEGRAM_BOT_TOKEN:
        targets.append("telegram")
    if settings.ALERT_WEBHOOK_URL:
        targets.append("webhook")
    return targets


def notice_head(incident: Incident, notice: str) -> str:
    """One line: what happened to which rule (an e-mail's subject)."""
    if notice == Notice.OPENED:
        return f"[{incident.severity.upper()}] {incident.rule_key} opened"
    lasted = (incident.resolved_at - incident.opened_at).total_seconds()
    return f"[RESOLVED] {incident.rule_key} after {_duration(lasted)}"


def notice_text(incident: Incident, notice: str) -> str:
    return f"{notice_head(incident, notice)}: {incident.summary} (incident #{incident.pk})"


def notice_payload(incident: Incident, notice: str) -> dict:
    return {
        "text": notice_text(incident, notice),
        "status": notice,
        "event_action": "trigger" if notice == Notice.OPENED else "resolve",
        "dedup_key": f"companion-incident-{incident.pk}",
        "incident": {
            "id": incident.pk,
            "rule": incident.rule_key,
            "severity": incident.severity,
            "summary": incident.summary,
            "value": incident.value,
            "threshold": incident.threshold,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        },
    }


def send_notice(target: str, incident: Incident, notice: str) -> tuple[bool, str]:
    sender = SENDERS.get(target)
    if sender is None:
        return False, f"unknown target {target!r}"
    try:
        return sender(incident, notice)
    except requests.RequestException as exc:
        return False, f"no answer ({type(exc).__name__})"
    except (smtplib.SMTPException, OSError) as exc:
        return False, f"mail not accepted ({type(exc).__name__})"


def _send_email(incident: Incident, notice: str) -> tuple[bool, str]:
    send_mail(
        subject=notice_head(incident, notice),
        message=notice_text(incident, notice),
        from_email=settings.ALERT_EMAIL_FROM,
        recipient_list=settings.ALERT_EMAILS,
        fail_silently=False,
    )
    return True, f"accepted for {len(settings.ALERT_EMAILS)} recipients"


def _send_telegram(incident: Incident, notice: str) -> tuple[bool, str]:
    # Straight to the Bot API, not through the patients' channel: no rate-limit slot or
    # breaker to wait for, and a notice about Telegram failing must not wait on Telegram's
    # breaker. Plain text, so a summary never meets the HTML parser.
    url = f"{settings.TELEGRAM_API_BASE_URL}/bot{settings.ALERT_TELEGRAM_BOT_TOKEN}/sendMessage"
    response = requests.post(
        url,
        json={"chat_id": settings.ALERT_TELEGRAM_CHAT_ID, "text": notice_text(incident, notice)},
        timeout=settings.ALERT_NOTIFY_TIMEOUT_SECONDS,
    )
    if response.status_code == 200:
        return True, "HTTP 200"
    return False, f"HTTP {response.status_code}"


def _send_webhook(incident: Incident, notice: str) -> tuple[bool, str]:
    response = requests.post(
        settings.ALERT_WEBHOOK_URL,
        json=notice_payload(incident, notice),
        timeout=settings.ALERT_NOTIFY_TIMEOUT_SECONDS,
    )
    return 200 <= response.status_code < 300, f"HTTP {response.status_code}"


SENDERS = {"email": _send_email, "telegram": _send_telegram, "webhook": _send_webhook}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
