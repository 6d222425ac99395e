"""Incidents: a rule that fires opens one, a rule that stops firing resolves it.

At most one incident per rule key is open at a time, enforced by a partial unique
constraint, so two evaluations running at once cannot both open it (and both notify).
Each notice to each target is a row of its own (IncidentNotification), sent once and
retried by the next evaluation while it fails; the timeline (IncidentEvent) records
every step. Summaries carry counts, rates, channel names and organization ids, never a
patient's name, address or message.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Severity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Incident(models.Model):
    rule_key = models.CharField(
        max_length=100, help_text='The rule and what it watches, e.g. "failure_rate:telegram".'
    )
    severity = models.CharField(max_length=16, choices=Severity.choices)
    summary = models.CharField(max_length=255)
    # The last measurement while it fired (None: the rule could not measure, e.g. no
    # heartbeat was ever recorded), and the threshold it was compared with.
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    last_firing_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule_key"],
                condition=Q(resolved_at__isnull=True),
                name="incident_one_open_per_rule",
            )
        ]
        indexes = [models.Index(fields=["-opened_at"], name="incident_opened_idx")]

    def __str__(self) -> str:
        return f"Incident #{self.pk} {self.rule_key}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class EventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    RESOLVED = "resolved", "Resolved"
    NOTIFIED = "notified", "Notified"
    NOTIFY_FAILED = "notify_failed", "Notification failed"
    NOTIFY_GAVE_UP = "notify_gave_up", "Notification given up"


class IncidentEvent(models.Model):
    """One line of an incident's timeline."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    target = models.CharField(max_length=16, blank=True)
    detail = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["incident", "at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.target}".strip()


class Notice(models.TextChoices):
    OPENED = "opened", "Opened"
    RESOLVED = "resolved", "Resolved"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    GAVE_UP = "gave_up", "Given up"


class IncidentNotification(models.Model):
    """One notice (opened or resolved) of one incident to one target."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notifications")
    notice = models.CharField(max_length=16, choices=Notice.choices)
    target = models.CharField(max_length=16)
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["incident", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "notice", "target"], name="notification_once_per_target"
            )
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="notification_pending_idx",
                condition=Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_notice_display()} notice to {self.target}"
