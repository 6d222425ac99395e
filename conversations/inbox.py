"""What the patient's web inbox page may show of a message, and marking it read."""

import nh3
from django.utils import timezone

from channels_app.content import WRITABLE_TAGS
from channels_app.models import InboxMessage
from patients.models import Patient

MAX_ID = 2**63 - 1


def safe_html(body: str, fmt: str) -> str:
    """What the inbox page may show as HTML: the Telegram tags, links only to http(s)."""
    if fmt != "html":
        return nh3.clean_text(body).replace("\n", "<br>")
    return nh3.clean(body, tags=set(WRITABLE_TAGS), attributes={"a": {"href"}},
                     url_schemes={"http", "https", "mailto", "tel"})  # fmt: skip


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
