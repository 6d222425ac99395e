"""The patient's web inbox page, behind the link their care team gives them."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.safestring import mark_safe

from channels_app.content import safe_html
from channels_app.models import InboxMessage
from patients.inbox_links import patient_for_token


def patient_inbox(request: HttpRequest, token: str) -> HttpResponse:
    """A patient's messages, behind their signed link; the newest 100, marked read."""
    patient = patient_for_token(token)
    if patient is None:
        raise Http404("No inbox here.")
    items = list(InboxMessage.objects.filter(patient=patient)[:100])
    for item in items:
        item.safe_body = mark_safe(safe_html(item.body, item.format))  # noqa: S308 - cleaned
        item.local_time = item.created_at.astimezone(patient.zone)
    unread = [item.pk for item in items if item.read_at is None]
    InboxMessage.objects.filter(pk__in=unread).update(read_at=timezone.now())
    response = render(request, "conversations/inbox.html",
                      {"items": items, "language": patient.language})  # fmt: skip
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
