"""The patient's web inbox page: marking read what it showed."""

from django.utils import timezone

from channels_app.models import InboxMessage
from patients.models import Patient

MAX_ID = 2**63 - 1


def read_mark_bound(raw: str) -> int | None:
    """The id of the newest message the page showed, or None when it is not one."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 0 < int(raw) <= MAX_ID:
        return None
    return int(raw)


def mark_read_up_to(patient: Patient, up_to: int) -> int:
    """Marks read the patient's unread messages up to `up_to`: those the page showed, not
    one that arrived after it was opened."""
    unread = InboxMessage.objects.filter(patient=patient, pk__lte=up_to, read_at__isnull=True)
    return unread.update(read_at=timezone.now())
