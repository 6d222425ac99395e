"""The audit trail: who created, changed, cancelled, retried or sent-now what, and when.

django-auditlog, chosen over django-simple-history: one LogEntry table for every model
(a care team's or a user's actions read in one query, not one history table per model),
JSON diffs, and the acting user taken from the request by its middleware. Field edits
are logged by auditlog itself; actions that services perform with bulk updates
(cancel, send now, retry, pause) are logged here explicitly, naming the action.
"""

from auditlog.models import LogEntry


def record_action(instance, action: str, *, actor=None, **details) -> None:
    """One trail entry for an action on an object; details must hold no health data."""
    LogEntry.objects.log_create(
        instance,
        action=LogEntry.Action.UPDATE,
        changes={"action": [None, action]},
        actor=actor if actor is not None and actor.is_authenticated else None,
        additional_data={"action": action, **details},
        force_log=True,
    )
