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

__all__ = [
    "EventKind",
    "Incident",
    "IncidentEvent",
    "IncidentNotification",
    "Notice",
    "NotificationStatus",
    "Severity",
]
