"""One module per concern (incidents, job runs); each is imported here so Django finds
its models."""

from operations.models.incidents import (
    EventKind,
    Incident,
    IncidentEvent,
    IncidentNotification,
    Notice,
    NotificationStatus,
    Severity,
)
from operations.models.jobs import JobOutcome, JobRun, ScheduledJob

__all__ = [
    "EventKind",
    "Incident",
    "IncidentEvent",
    "IncidentNotification",
    "JobOutcome",
    "JobRun",
    "Notice",
    "NotificationStatus",
    "ScheduledJob",
    "Severity",
]
