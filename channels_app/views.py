from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from channels_app.models import SandboxMessage
from scheduling.channel_status import channel_statuses


@staff_member_required
def sandbox_outbox(request: HttpRequest) -> HttpResponse:
    """What the sandbox recorded instead of sending; absent unless CHANNEL_SANDBOX is on."""
    if not settings.CHANNEL_SANDBOX:
        raise Http404("The channel sandbox is off.")
    latest = SandboxMessage.objects.all()[:100]
    return render(
        request,
        "channels_app/outbox.html",
        {"messages_sent": latest, "total": SandboxMessage.objects.count()},
    )


@staff_member_required
def channel_status(request: HttpRequest) -> HttpResponse:
    """Breakers, queue depths and backlogs per channel, for operators and care teams."""
    return render(request, "channels_app/status.html", {"statuses": channel_statuses()})
