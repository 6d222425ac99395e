"""The companion's own initiative: its persona per organization, each patient's check-in
plan, and one row per check-in (once per patient and local date, kept by the database);
follow-ups for patients who have gone quiet, and each patient's follow-up state."""

from datetime import time

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from patients.models import Organization, Patient
from scheduling.models import ScheduledMessage


class CompanionPersona(models.Model):
    """How the companion presents itself in an organization, and what it may do there."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="companion"
    )
    companion_name = models.CharField(max_length=60, default="Mia")
    support_style = models.CharField(
        max_length=120,
        default="warm and encouraging",
        help_text='How it writes, e.g. "warm and encouraging" or "brief and practical".',
    )
    default_language = models.CharField(max_length=16, default="en")
    check_ins_enabled = models.BooleanField(
        default=True, help_text="Daily check-ins in this organization, for patients who have them."
    )
    check_ins_for_new_patients = models.BooleanField(
        default=False, help_text="New patients start with daily check-ins on."
    )
    follow_ups_enabled = models.BooleanField(
        default=True, help_text="Follow-ups for patients who have gone quiet, in this organization."
    )
    share_context_with_llm = models.BooleanField(
        default=False,
        help_text="Send the patient's recent messages, this week's adherence and upcoming "
        "appointments to the language model. Off: only the first name, language, weather "
        "and this persona leave.",
    )

    def __str__(self) -> str:
        return f"{self.companion_name} ({self.organization})"


class CheckInPlan(models.Model):
    """A patient's daily check-in: when, and where for the weather. `next_at` is the next
    check-in moment (UTC), kept up to date on every change, so that finding the due ones
    reads an index and never scans the patients."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="check_in_plan")
    enabled = models.BooleanField(default=True)
    local_time = models.TimeField(default=time(9, 0), help_text="Preferred local time, e.g. 08:30.")
    window_minutes = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(5), MaxValueValidator(180)],
        help_text="The check-in may go this many minutes before or after the time.",
    )
    latitude = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    longitude = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    place_name = models.CharField(
        max_length=120, blank=True, help_text="Resolved once to coordinates for the weather."
    )
    next_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_local_date = models.DateField(null=True, blank=True, editable=False)
    stopped_reason = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_at"], name="check_in_due_idx", condition=Q(enabled=True))
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(latitude__isnull=True, longitude__isnull=True)
                | Q(latitude__gte=-90, latitude__lte=90, longitude__gte=-180, longitude__lte=180),
                name="check_in_plan_coordinates",
            )
        ]

    def __str__(self) -> str:
        return f"Check-ins of patient {self.patient_id}"


class CheckInStatus(models.TextChoices):
    WRITING = "writing", "Being written"
    SCHEDULED = "scheduled", "Scheduled"
    SKIPPED = "skipped", "Skipped"


class CheckInSource(models.TextChoices):
    LLM = "llm", "Written by the language model"
    FALLBACK = "fallback", "Fallback template"


class CheckIn(models.Model):
    """One check-in: at most one per patient and local date, whatever runs twice."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="check_ins")
    local_date = models.DateField()
    due_at = models.DateTimeField(help_text="The check-in moment (UTC).")
    window_ends_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=CheckInStatus.choices, default=CheckInStatus.WRITING
    )
    source = models.CharField(max_length=16, choices=CheckInSource.choices, blank=True)
    fallback_reason = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=100, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    with_weather = models.BooleanField(default=False)
    with_context = models.BooleanField(default=False, help_text="Patient context was shared.")
    message = models.OneToOneField(
        ScheduledMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="check_in"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "local_date"], name="check_in_once_a_day")
        ]
        indexes = [
            # The sweep for check-ins whose text did not come in time.
            models.Index(
                fields=["due_at"], name="check_in_writing_idx", condition=Q(status="writing")
            )
        ]

    def __str__(self) -> str:
        return f"Check-in of patient {self.patient_id} on {self.local_date}"


class FollowUpState(models.Model):
    """Whether a patient gets follow-ups when they go quiet (they may opt out of these
    alone), and when to look at them next: an indexed moment, moved on each time, so the
    planner never scans the patients."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="follow_ups")
    enabled = models.BooleanField(
        default=True, help_text="Off when the patient sent /followups off (or the care team)."
    )
    next_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_at"], name="follow_up_due_idx", condition=Q(enabled=True))
        ]

    def __str__(self) -> str:
        return f"Follow-ups of patient {self.patient_id}"


class FollowUpKind(models.TextChoices):
    AUTOMATIC = "automatic", "The patient went quiet"
    MANUAL = "manual", "Asked for by the care team"


class FollowUpStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    WRITING = "writing", "Being written"
    SCHEDULED = "scheduled", "Scheduled"
    SKIPPED = "skipped", "Skipped"


class FollowUp(models.Model):
    """One follow-up: why, what the model was given, which path wrote it, and whether the
    patient answered (wrote within FOLLOW_UP_RESPONSE_HOURS of it)."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="follow_up_log")
    kind = models.CharField(max_length=16, choices=FollowUpKind.choices)
    status = models.CharField(
        max_length=16, choices=FollowUpStatus.choices, default=FollowUpStatus.WRITING
    )
    due_at = models.DateTimeField()
    quiet_since = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    context_used = models.JSONField(
        default=list, blank=True, help_text="What the language model was given, by kind."
    )
    source = models.CharField(max_length=16, choices=CheckInSource.choices, blank=True)
    fallback_reason = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=100, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    message = models.OneToOneField(
        ScheduledMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="follow_up"
    )
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When it was scheduled to go.")
    responded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-due_at"]
        indexes = [
            models.Index(fields=["patient", "due_at"]),
            models.Index(
                fields=["due_at"],
                name="follow_up_open_idx",
                condition=Q(status__in=["planned", "writing"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Follow-up of patient {self.patient_id} at {self.due_at:%Y-%m-%d %H:%M}"
