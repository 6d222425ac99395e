import uuid

from auditlog.registry import auditlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from patients.fields import EncryptedTextField
from patients.models import Channel, Contact, Organization, Patient, validate_timezone
from scheduling.template_syntax import template_parameters


def default_delivery_window() -> int:
    return settings.DELIVERY_DEFAULT_WINDOW_SECONDS


class ContentFormat(models.TextChoices):
    TEXT = "text", _("Plain text")
    HTML = "html", "HTML"


class MessageStatus(models.TextChoices):
    ACTIVE = "active", pgettext_lazy("message status", "Active")
    PAUSED = "paused", pgettext_lazy("message status", "Paused")
    COMPLETED = "completed", pgettext_lazy("message status", "Completed")
    CANCELLED = "cancelled", pgettext_lazy("message status", "Cancelled")


class MessageKind(models.TextChoices):
    GENERAL = "general", "General"
    MEDICATION = "medication", "Medication reminder"
    APPOINTMENT = "appointment", "Appointment reminder"
    CHECK_IN = "check_in", "Check-in"
    FOLLOW_UP = "follow_up", "Follow-up"


class ScheduledMessage(models.Model):
    """What to send to whom, and when: one time, or by an RFC 5545 recurrence rule."""

    # No index of their own: the (patient, status) and (organization, status) indexes
    # below start with them, and every index is one more write per dispatched message.
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="scheduled_messages", db_index=False
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    channel_fixed = models.BooleanField(
        default=False,
        help_text="Named by the care team: never moved to another channel (paused instead).",
    )
    content = EncryptedTextField()  # encrypted at rest (patients/encryption.py)
    format = models.CharField(
        max_length=8, choices=ContentFormat.choices, default=ContentFormat.TEXT
    )
    priority = models.PositiveSmallIntegerField(default=3, help_text="1 is the most urgent")
    status = models.CharField(
        max_length=16, choices=MessageStatus.choices, default=MessageStatus.ACTIVE
    )
    status_reason = models.CharField(max_length=255, blank=True)
    starts_at = models.DateTimeField(help_text="The first occurrence (UTC).")
    next_run_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next occurrence is sent (UTC); empty when done."
    )
    next_occurrence_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the rule puts the next occurrence (UTC), before quiet hours move it.",
    )
    recurrence = models.TextField(
        blank=True, help_text="RFC 5545 RRULE; empty for a one-time message."
    )
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="IANA time zone the rule is read in; empty means the patient's.",
    )
    ignore_quiet_hours = models.BooleanField(
        default=False, help_text="Send even in the patient's quiet hours (priority 1 only)."
    )
    delivery_window_seconds = models.PositiveIntegerField(
        default=default_delivery_window,
        help_text="How late a delivery may still be sent; past it the delivery expires.",
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    kind = models.CharField(
        max_length=16, choices=MessageKind.choices, default=MessageKind.GENERAL,
        help_text="Medication reminders carry Taken / Snooze / Skip buttons on Telegram.",
    )  # fmt: skip
    created_by_patient = models.BooleanField(
        default=False, help_text="Set up by the patient through the bot or a text command."
    )
    ack_timeout_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="A medication reminder not answered this many minutes after it was sent "
        "counts as missed (and the care team is alerted). Empty: never.",
    )  # fmt: skip

    class Meta:
        indexes = [
            # The dispatcher's only read: cost follows the due rows, not the table.
            models.Index(
                fields=["next_run_at"],
                name="message_due_idx",
                condition=Q(status="active"),
            ),
            # The urgent ones are claimed first, from an index of their own.
            models.Index(
                fields=["next_run_at"],
                name="message_due_urgent_idx",
                condition=Q(status="active", priority=1),
            ),
            models.Index(fields=["patient", "status"]),
            models.Index(fields=["organization", "status"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=1, priority__lte=5), name="message_priority_1_to_5"
            ),
            models.CheckConstraint(
                condition=~Q(status="active") | Q(next_run_at__isnull=False),
                name="message_active_has_next_run",
            ),
            models.CheckConstraint(
                condition=Q(ignore_quiet_hours=False) | Q(priority=1),
                name="message_only_priority_1_ignores_quiet_hours",
            ),
        ]

    def __str__(self) -> str:
        return f"Message #{self.pk}"

    def clean(self) -> None:
        if self.ignore_quiet_hours and self.priority != 1:
            raise ValidationError(
                {"ignore_quiet_hours": "Only a priority 1 message may ignore quiet hours."}
            )

    @property
    def is_recurring(self) -> bool:
        return bool(self.recurrence)

    @property
    def zone_name(self) -> str:
        return self.timezone or self.patient.timezone


def attachment_storage():
    """STORAGES["attachments"]: a folder by default, an S3-compatible bucket by setting."""
    return storages["attachments"]


def attachment_path(instance: "Attachment", filename: str) -> str:
    """A random name under the clinic's folder: the uploaded name says nothing here."""
    return f"{instance.message.organization_id}/{uuid.uuid4().hex}"


class AttachmentKind(models.TextChoices):
    PHOTO = "photo", "Photo"
    VOICE = "voice", "Voice note"
    DOCUMENT = "document", "Document"


class Attachment(models.Model):
    """A photo, voice note or document sent with a message (scheduling/attachments.py).
    The file is encrypted at rest when `encrypted`; size and sha256 are of the plain file."""

    message = models.OneToOneField(
        ScheduledMessage, on_delete=models.CASCADE, related_name="attachment"
    )
    file = models.FileField(storage=attachment_storage, upload_to=attachment_path, max_length=255)
    kind = models.CharField(max_length=16, choices=AttachmentKind.choices)
    content_type = models.CharField(max_length=100, help_text="Read from the file's bytes.")
    size = models.PositiveBigIntegerField(help_text="Bytes.")
    sha256 = models.CharField(max_length=64)
    # Shown to the care team only; never logged, never sent (files go as "photo.jpg").
    original_name = EncryptedTextField(blank=True)
    encrypted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of message #{self.message_id}"


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", pgettext_lazy("delivery status", "Queued")
    SENDING = "sending", pgettext_lazy("delivery status", "Sending")
    SENT = "sent", pgettext_lazy("delivery status", "Sent")
    FAILED = "failed", pgettext_lazy("delivery status", "Failed")
    CANCELLED = "cancelled", pgettext_lazy("delivery status", "Cancelled")
    EXPIRED = "expired", pgettext_lazy("delivery status", "Expired")


FINAL_DELIVERY_STATUSES = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED, DeliveryStatus.EXPIRED}
)


class Delivery(models.Model):
    """One occurrence of a message on its way to one patient."""

    # Indexed by the unique (message, occurrence_at) constraint below.
    message = models.ForeignKey(
        ScheduledMessage, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    occurrence_at = models.DateTimeField()
    channel = models.CharField(max_length=16, choices=Channel.choices)
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    attempts_before_retry = models.PositiveSmallIntegerField(
        default=0, help_text="Attempts made before the last manual retry (a fresh budget)."
    )
    next_attempt_at = models.DateTimeField(help_text="When the next try may start.")
    expires_at = models.DateTimeField(help_text="Past this, the delivery is not sent.")
    lease_until = models.DateTimeField(null=True, blank=True)
    held_at = models.DateTimeField(
        null=True, blank=True, help_text="Kept out of the broker (backpressure) since then."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    # The provider's id of each accepted part, comma-separated, in order.
    provider_message_id = models.TextField(blank=True)
    # The message's, when the delivery was made: held deliveries are released by it.
    priority = models.PositiveSmallIntegerField(default=3)
    parts_sent = models.PositiveSmallIntegerField(
        default=0, help_text="Parts the provider accepted; a retry sends only the rest."
    )
    provider_status = models.CharField(
        max_length=16, blank=True, help_text="What the provider reported later (e.g. delivered)."
    )
    provider_status_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["message", "occurrence_at"], name="delivery_once_per_occurrence"
            )
        ]
        indexes = [
            # The reaper's two reads: deliveries handed to the broker whose task never ran
            # (few: the broker holds only work due now) and sends whose worker died.
            models.Index(
                fields=["updated_at"],
                name="delivery_published_idx",
                condition=Q(status="queued", held_at__isnull=True),
            ),
            models.Index(
                fields=["lease_until"],
                name="delivery_sending_idx",
                condition=Q(status="sending"),
            ),
            models.Index(
                fields=["channel", "priority", "next_attempt_at"],
                name="delivery_held_priority_idx",
                condition=Q(status="queued", held_at__isnull=False),
            ),
            models.Index(fields=["status", "occurrence_at"]),
            # The operators' status page: the latest send and the sends of the last hour.
            models.Index(fields=["sent_at"], name="delivery_sent_idx", condition=Q(status="sent")),
        ]

    def __str__(self) -> str:
        return f"Delivery #{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_DELIVERY_STATUSES

    @property
    def attempts_used(self) -> int:
        """Attempts counted against DELIVERY_MAX_ATTEMPTS: those since the last manual retry."""
        return self.attempts - self.attempts_before_retry


class AttemptOutcome(models.TextChoices):
    IN_PROGRESS = "in_progress", _("In progress")
    SENT = "sent", pgettext_lazy("attempt outcome", "Sent")
    TRANSIENT = "transient", _("Transient error")
    PERMANENT = "permanent", _("Permanent error")
    BLOCKED = "blocked", _("Recipient blocked")
    INTERRUPTED = "interrupted", _("Interrupted (worker lost)")


class DeliveryAttempt(models.Model):
    """One try at the provider, written before the send and completed after it."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=AttemptOutcome.choices, default=AttemptOutcome.IN_PROGRESS
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_text = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_unique")
        ]
        indexes = [
            # The alert rules' failure rate, every minute: the attempts that finished in
            # the last ALERT_WINDOW_MINUTES, out of a history of millions.
            models.Index(fields=["finished_at"], name="attempt_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of delivery #{self.delivery_id}"


class AckAction(models.TextChoices):
    TAKEN = "taken", "Taken"
    SNOOZED = "snoozed", "Snoozed"
    SKIPPED = "skipped", "Skipped"
    MISSED = "missed", "Missed (no answer in time)"


class Acknowledgement(models.Model):
    """The patient's answer to one delivered reminder, or "missed" when none came in time.
    One per delivery: the first answer counts, so a double press is recorded once."""

    delivery = models.OneToOneField(
        Delivery, on_delete=models.CASCADE, related_name="acknowledgement"
    )
    action = models.CharField(max_length=16, choices=AckAction.choices)
    at = models.DateTimeField()
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    snooze_message = models.ForeignKey(
        ScheduledMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The one-time repeat a snooze scheduled.",
    )  # fmt: skip

    class Meta:
        indexes = [models.Index(fields=["action", "at"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()} for delivery #{self.delivery_id}"


class AlertStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class CareTeamAlert(models.Model):
    """A note to the organization's alert contact that a patient missed a dose."""

    acknowledgement = models.OneToOneField(
        Acknowledgement, on_delete=models.CASCADE, related_name="alert"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=255)
    status = models.CharField(
        max_length=16, choices=AlertStatus.choices, default=AlertStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="alert_queued_idx", condition=Q(status="queued")
            )
        ]

    def __str__(self) -> str:
        return f"Care team alert #{self.pk}"


class MessageTemplate(models.Model):
    """A reminder written once, per organization and language, with {named} parameters.

    Rows without an organization are the global defaults every clinic starts from.
    """

    organization = models.ForeignKey(
        "patients.Organization", on_delete=models.CASCADE, null=True, blank=True,
        related_name="templates", help_text="Empty: a global default.",
    )  # fmt: skip
    key = models.SlugField(max_length=64, help_text="e.g. medication_reminder")
    language = models.CharField(max_length=16, help_text="e.g. en, de, pt-br")
    body = models.TextField(help_text="Text with {name}-style parameters.")
    format = models.CharField(max_length=8, default="text", choices=[("text", "Plain text"),
                                                                     ("html", "HTML")])  # fmt: skip
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "key", "language"], name="template_unique_per_org",
                nulls_distinct=False,
            )
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.key} ({self.language})"

    def clean(self) -> None:
        template_parameters(self.body)  # raises ValidationError naming a bad parameter


# The trail records that the content changed and who changed it, never the text.
auditlog.register(
    ScheduledMessage,
    exclude_fields=["updated_at", "next_run_at", "next_occurrence_at"],
    mask_fields=["content"],
    mask_callable="patients.encryption.audit_mask",
)
auditlog.register(MessageTemplate, exclude_fields=["updated_at"])
