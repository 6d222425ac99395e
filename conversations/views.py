"""The patient's web inbox page, behind the link their care team (or the bot) gives them.

Opening the page (GET) changes nothing: link previews in messengers and mail scanners
fetch links too, and must not mark messages read. The page marks what it showed as read
with a POST once a person has it in front of them (conversations/inbox.js, or the
button when scripts are off).
"""

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from channels_app.attachments import EXTENSIONS
from channels_app.content import safe_html
from channels_app.models import InboxMessage
from conversations.inbox import mark_read_up_to, read_mark_bound
from patients.inbox_links import inbox_path, patient_for_inbox_token
from patients.languages import patient_language
from scheduling.attachments import (
    attachment_bytes,
    attachment_from_link,
    attachments_of_deliveries,
)
from scheduling.models import Attachment

PAGE_SIZE = 100


@require_safe
def patient_inbox(request: HttpRequest, token: str) -> HttpResponse:
    """A patient's newest messages, behind their link; nothing is marked read here."""
    patient = patient_for_inbox_token(token)
    if patient is None:
        return _link_ended(request)
    items = list(InboxMessage.objects.filter(patient=patient)[:PAGE_SIZE])
    attachments = attachments_of_deliveries([i.delivery_id for i in items if i.delivery_id])
    for item in items:
        item.attachment = attachments.get(item.delivery_id)
        item.safe_body = mark_safe(safe_html(item.body, item.format))  # noqa: S308 - cleaned
    unread = [item.pk for item in items if item.read_at is None]
    language = patient_language(patient.language)
    context = {
        "items": items,
        "language": language,
        "up_to": max(unread, default=None),
        "token": token,
    }
    # The patient's language and time zone, whatever the browser that opened the link asks
    # for (the date filter shows times in the active zone: UTC without this).
    with translation.override(language), timezone.override(patient.zone):
        response = render(request, "conversations/inbox.html", context)
        response["Content-Language"] = language
    return _private(response)


# No CSRF token: with the page's Referrer-Policy browsers send "Origin: null" with the
# POST, which Django's check refuses. The secret in the address is what authorizes the
# request, and a site that knew it could read the whole inbox anyway.
@csrf_exempt
@require_POST
def patient_inbox_read(request: HttpRequest, token: str) -> HttpResponse:
    """Marks read the patient's messages up to the newest one their page showed."""
    patient = patient_for_inbox_token(token)
    if patient is None:
        return _link_ended(request)
    up_to = read_mark_bound(request.POST.get("up_to", ""))
    if up_to is None:
        problem = "up_to: give the id of the newest message the page showed."
        return _private(HttpResponse(problem, status=400, content_type="text/plain"))
    mark_read_up_to(patient, up_to)
    return _private(HttpResponseRedirect(inbox_path(token), status=303))


@require_safe
def patient_inbox_attachment(request: HttpRequest, token: str, item_id: int) -> HttpResponse:
    """The file of one of the patient's inbox messages, behind their inbox link."""
    patient = patient_for_inbox_token(token)
    if patient is None:
        return _link_ended(request)
    item = InboxMessage.objects.filter(pk=item_id, patient=patient).first()
    row = attachments_of_deliveries([item.delivery_id]).get(item.delivery_id) if item else None
    if row is None:
        raise Http404("no such attachment")
    return _private(_file_response(row))


@require_safe
def attachment_link(request: HttpRequest, token: str) -> HttpResponse:
    """A file behind a signed, expiring address: the one Twilio fetches an MMS from, or
    the link an SMS carries where MMS does not reach."""
    row = attachment_from_link(token)
    if row is None:
        raise Http404("the link is unknown or has expired")
    return _private(_file_response(row))


def _file_response(row: Attachment) -> HttpResponse:
    response = HttpResponse(attachment_bytes(row), content_type=row.content_type)
    shown = "inline" if row.kind in ("photo", "voice") else "attachment"
    extension = EXTENSIONS.get(row.content_type, "bin")
    response["Content-Disposition"] = f'{shown}; filename="{row.kind}.{extension}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _link_ended(request: HttpRequest) -> HttpResponse:
    """Unknown, expired, revoked or deactivated all look the same: a page that says how
    to get a new link."""
    return _private(render(request, "conversations/inbox_ended.html", status=404))


def _private(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"  # the token is in the address
    return response
