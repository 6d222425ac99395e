"""Operators' and developers' pages: the sandbox outbox, the channels' status and the
system's jobs."""

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import user_passes_test
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from channels_app.models import SandboxMessage
from operations.job_history import latest_runs
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
    page = list(recorded[:100])
    # Which path wrote each: the care team, or the companion's model or its fallback.
    writers = dict(
        Delivery.objects.filter(pk__in=[item.delivery_id for item in page]).values_list(
            "pk", "message__metadata__written_by"
        )
    )
    for item in page:
        item.written_by = WRITTEN_BY.get(writers.get(item.delivery_id), "care team")
    return render(
        request, "care_team/outbox.html", {"messages_sent": page, "total": recorded.count()}
    )


WRITTEN_BY = {"llm": "companion (language model)", "fallback": "companion (fallback template)"}


@user_passes_test(lambda user: user.is_active and user.is_superuser)
def channel_status(request: HttpRequest) -> HttpResponse:
    """Breakers, queue depths and backlogs per channel, and each system job's latest run:
    the operators' view, since the counts span every organization."""
    return render(
        request,
        "care_team/status.html",
        {"statuses": channel_statuses(), "job_runs": latest_runs()},
    )
