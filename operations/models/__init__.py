"""One module per concern (incidents, job runs); each is imported here so Django finds
its models."""

from operations.models.jobs import JobOutcome, JobRun, ScheduledJob

__all__ = ["JobOutcome", "JobRun", "ScheduledJob"]
