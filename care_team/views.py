"""Operators' and developers' pages: the sandbox outbox, the channels' status and the
control panel (/ops/) with its diagnostics and the system's jobs."""

import logging

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import user_passes_test
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_POST

from care_team.api.health import health_answer
from channels_app.models import SandboxMessage
from operations.diagnostics import DIAGNOSTICS, run_diagnostic
from operations.job_history import latest_runs
from operations.status import scheduler_status
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


logger = logging.getLogger(__name__)
operators_only = user_passes_test(lambda user: user.is_active and user.is_superuser)


@operators_only
def channel_status(request: HttpRequest) -> HttpResponse:
    """Breakers, queue depths and backlogs per channel, and each system job's latest run:
    the operators' view, since the counts span every organization."""
    return render(
        request,
        "care_team/status.html",
        {"statuses": channel_statuses(), "job_runs": latest_runs()},
    )


DIAGNOSTIC_LABELS = {
    "database": "Database round trip",
    "redis": "Redis round trip",
    "telegram_get_me": "Telegram getMe",
    "telegram_webhook": "Telegram webhook info",
    "whatsapp": "WhatsApp configuration",
    "twilio": "Twilio configuration",
    "email": "E-mail configuration",
}


@operators_only
def control_panel(request: HttpRequest) -> HttpResponse:
    """The scheduler's status in sections (operations/status.py), with the diagnostics."""
    return _panel(request, results=[])


@operators_only
@require_POST
def control_panel_diagnostics(request: HttpRequest) -> HttpResponse:
    """Runs one diagnostic, or all of them ("all"), and shows the panel with the results."""
    name = request.POST.get("name", "")
    names = list(DIAGNOSTICS) if name == "all" else [name]
    if any(item not in DIAGNOSTICS for item in names):
        return HttpResponseBadRequest(
            f"Unknown diagnostic {name[:40]!r}.", content_type="text/plain"
        )
    results = [run_diagnostic(item) for item in names]
    for result in results:
        logger.info(
            "diagnostic %s run by user %s: %s",
            result.name,
            request.user.pk,
            "ok" if result.ok else "failing",
        )
    return _panel(request, results=results)


def _panel(request: HttpRequest, *, results: list) -> HttpResponse:
    status = scheduler_status(health=health_answer())
    activity = status["database_activity"]
    peak = max((row["sent"] for row in activity.get("sent_per_minute", [])), default=0)
    return render(
        request,
        "care_team/control_panel.html",
        {
            "status": status,
            "activity": activity,
            "peak_per_minute": max(peak, 1),
            "results": results,
            "diagnostics": DIAGNOSTIC_LABELS,
        },
    )
