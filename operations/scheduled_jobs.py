"""Scheduling a custom job (operations.job_types): checked whole before anything is
saved, then given the django-celery-beat row that makes Beat run it: a clocked one-off
row for "once at", an interval or a crontab row otherwise. The job and its Beat row are
saved in one transaction, so a bad schedule leaves neither behind."""

import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django_celery_beat import validators
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)

from operations import job_types
from operations.models import ScheduledJob

RUN_JOB_TASK = "operations.run_job"
MAX_RETRIES = 10
MIN_EVERY_SECONDS = 10  # a custom job is not a dispatcher: nothing needs it faster
CRONTAB_FIELDS = [
    ("minute", validators.minute_validator),
    ("hour", validators.hour_validator),
    ("day_of_month", validators.day_of_month_validator),
    ("month_of_year", validators.month_of_year_validator),
    ("day_of_week", validators.day_of_week_validator),
]
SCHEDULE_FIELDS = ("run_at", "every_seconds", "crontab")


def validate_job(job: ScheduledJob) -> None:
    """Every problem of the job at once, each under its field's name."""
    errors: dict[str, list[str]] = {}
    try:
        job_types.validate_payload(job.job_type, job.payload)
    except ValidationError as error:
        for name, messages in error.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    chosen = [name for name in SCHEDULE_FIELDS if getattr(job, name) not in (None, "")]
    if len(chosen) != 1:
        errors.setdefault("run_at", []).append(
            "Give exactly one of run_at (once), every_seconds or crontab."
        )
    if job.every_seconds is not None and job.every_seconds < MIN_EVERY_SECONDS:
        errors.setdefault("every_seconds", []).append(f"At least {MIN_EVERY_SECONDS} seconds.")
    if job.crontab and (problem := _crontab_problem(job.crontab)):
        errors.setdefault("crontab", []).append(problem)
    if job.max_retries > MAX_RETRIES:
        errors.setdefault("max_retries", []).append(f"At most {MAX_RETRIES}.")
    if errors:
        raise ValidationError(errors)


def _crontab_problem(text: str) -> str | None:
    parts = text.split()
    if len(parts) != len(CRONTAB_FIELDS):
        return 'Five fields: "minute hour day-of-month month day-of-week", e.g. "30 2 * * *".'
    for value, (name, validate) in zip(parts, CRONTAB_FIELDS, strict=True):
        try:
            validate(value)
        except ValidationError:
            return f"{value!r} is not a valid {name.replace('_', ' ')}."
    return None


@transaction.atomic
def scheduled_job_save(job: ScheduledJob, *, actor=None) -> ScheduledJob:
    """Creates or changes the job and its Beat row."""
    validate_job(job)
    if job.pk is None:
        job.created_by = actor
    job.save()
    job.periodic_task = _beat_row(job)
    job.save(update_fields=["periodic_task"])
    return job


def _beat_row(job: ScheduledJob) -> PeriodicTask:
    task = job.periodic_task or PeriodicTask(name=f"job: {job.name}"[:200])
    task.name = f"job: {job.name}"[:200]
    task.task = RUN_JOB_TASK
    task.args = json.dumps([job.pk])
    task.queue = settings.SCHEDULER_QUEUE
    task.enabled = job.enabled
    task.description = f"Custom job of type {job.job_type} (operations.ScheduledJob #{job.pk})."
    task.interval = task.crontab = task.clocked = task.solar = None
    task.one_off = False
    if job.run_at is not None:
        task.clocked, _ = ClockedSchedule.objects.get_or_create(clocked_time=job.run_at)
        task.one_off = True
        task.expire_seconds = None
    elif job.every_seconds:
        task.interval, _ = IntervalSchedule.objects.get_or_create(
            every=job.every_seconds, period=IntervalSchedule.SECONDS
        )
        # A run that waited longer than its interval is stale: the next one does it.
        task.expire_seconds = job.every_seconds
    else:
        minute, hour, day_of_month, month_of_year, day_of_week = job.crontab.split()
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone="UTC",
        )
        task.expire_seconds = None
    task.save()
    return task


@transaction.atomic
def scheduled_job_delete(job: ScheduledJob) -> None:
    """The job and its Beat row; its history stays (until retention)."""
    if job.periodic_task_id:
        job.periodic_task.delete()
    job.delete()


def retry_delay(retries: int) -> float:
    """Seconds before retry number `retries + 1`: doubling from JOB_RETRY_BASE_SECONDS."""
    return min(settings.JOB_RETRY_BASE_SECONDS * 2**retries, settings.JOB_RETRY_MAX_SECONDS)


def next_runs(job: ScheduledJob) -> str:
    """When Beat runs it, in words, for the admin and the API."""
    if not job.enabled:
        return "disabled"
    if job.run_at is not None:
        # Beat switches a one-off row off once it has run it.
        spent = job.periodic_task is not None and not job.periodic_task.enabled
        return f"once at {job.run_at:%Y-%m-%d %H:%M:%S} UTC" + (" (done)" if spent else "")
    if job.every_seconds:
        return f"every {job.every_seconds} s"
    return f"crontab {job.crontab} (UTC)"
