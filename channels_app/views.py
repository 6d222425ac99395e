from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import user_passes_test
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.safestring import mark_safe

from channels_app.inbox import patient_for_token, safe_html
from channels_app.models import InboxMessage, SandboxMessage
from patients.access import scoped
from scheduling.channel_status import channel_statuses
from scheduling.models import Delivery


@staff_member_required
def sandbox_outbox(request: HttpRequest) -> HttpResponse:
    """What the sandbox recorded instead of sending; absent unless CHANNEL_SANDBOX is on."""
    if not settings.CHANNEL_SANDBOX:
        raise Http404("The channel sandbox is off.")
    visible = scoped(Delivery.objects.all(), request.user).values("pk")
    recorded = SandboxMessage.objects.filter(delivery_id__in=visible)
    return render(
        request,
        "channels_app/outbox.html",
        {"messages_sent": recorded[:100], "total": recorded.count()},
    )


@user_passes_test(lambda user: user.is_active and user.is_superuser)
def channel_status(request: HttpRequest) -> HttpResponse:
    """Breakers, queue depths and backlogs per channel: the operators' view, since the
    counts span every organization."""
    return render(request, "channels_app/status.html", {"statuses": channel_statuses()})


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
    response = render(request, "channels_app/inbox.html",
                      {"items": items, "language": patient.language})  # fmt: skip
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
