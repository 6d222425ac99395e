"""The system's jobs: a record of each run (JobRun), and the jobs an operator added
(ScheduledJob, run by django-celery-beat rows made for it)."""

from django.conf import settings
from django.db import models
from django_celery_beat.models import PeriodicTask

RESULT_MAX = 255
ERROR_MAX = 500


class JobOutcome(models.TextChoices):
    OK = "ok", "OK"
    FAILED = "failed", "Failed"
    RETRYING = "retrying", "Failed, will retry"


class JobRun(models.Model):
    """One run of a system job, or one minute of a job that runs more often than that
    (the dispatcher every second): then `runs` says how many, `duration_ms` is the
    longest, and the result sums them up. The result is counts, never patient data."""

    job = models.CharField(max_length=100)
    task_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=JobOutcome.choices)
    runs = models.PositiveIntegerField(default=1)
    result = models.CharField(max_length=RESULT_MAX, blank=True)
    error = models.CharField(max_length=ERROR_MAX, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # "The latest runs of this job" (admin, control panel, API).
            models.Index(fields=["job", "-started_at"], name="job_run_latest_idx"),
            # Retention deletes the oldest first.
            models.Index(fields=["started_at"], name="job_run_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.job} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class ScheduledJob(models.Model):
    """A job an operator scheduled: a registered job type (operations.job_types) with
    its payload, run once at a time, every N seconds or on a crontab. Beat runs it through
    the PeriodicTask made for it (operations.scheduled_jobs), so Beat's own rows stay the
    one schedule of the system."""

    name = models.CharField(max_length=100, unique=True)
    job_type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    run_at = models.DateTimeField(null=True, blank=True, help_text="Run once, at this time.")
    every_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Or run every so many seconds."
    )
    crontab = models.CharField(
        max_length=100,
        blank=True,
        help_text='Or on a crontab, "minute hour day month weekday" (UTC).',
    )
    max_retries = models.PositiveSmallIntegerField(default=3)
    enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField(
        PeriodicTask,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.job_type})"

    @property
    def history_name(self) -> str:
        """The name its runs are recorded under: each scheduled job has its own history."""
        return f"job: {self.name}"
