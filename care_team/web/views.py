"""Pages of the care teams' web UI. Thin: forms read the input, scheduling.creation and
scheduling.services do the work, care_team.web.queries reads (always scoped)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from care_team.languages import provider_language_set
from care_team.web.chart import stacked_bars
from care_team.web.forms import ChartFilterForm, MessageCreateForm, MessageFilterForm, PreviewForm
from care_team.web.preview import PREVIEW_COUNT, Preview, phrase_preview
from care_team.web.queries import (
    deliveries_per_day,
    filter_messages,
    message_deliveries,
    message_delivery_count,
    visible_messages,
)
from outreach.follow_ups import follow_up_schedule
from scheduling.creation import message_create
from scheduling.models import MessageStatus
from scheduling.occurrences import message_preview
from scheduling.services import message_cancel, message_send_now

logger = logging.getLogger(__name__)

# Not settings.LOGIN_URL, which sends people to the admin's login.
provider_required = login_required(login_url=reverse_lazy("scheduled_messages:login"))

PAGE_SIZE = 50
DELIVERIES_SHOWN = 50
CANCELLABLE = (MessageStatus.ACTIVE, MessageStatus.PAUSED)


@provider_required
@require_GET
def message_list(request: HttpRequest) -> HttpResponse:
    form = MessageFilterForm(request.GET, user=request.user)
    found = visible_messages(request.user)
    # An unknown filter value (another clinic's patient, say) matches nothing, not everything.
    found = filter_messages(found, **form.cleaned_data) if form.is_valid() else found.none()
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "care_team/web/list.html", {"form": form, "page": page})


@provider_required
@require_http_methods(["GET", "POST"])
def message_new(request: HttpRequest) -> HttpResponse:
    posted = request.method == "POST"
    form = MessageCreateForm(
        request.POST if posted else None, request.FILES if posted else None, user=request.user
    )
    if posted and form.is_valid():
        try:
            with transaction.atomic():
                message = message_create(form.message_request())
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            logger.info("message %s created in the web UI by user %s", message.pk, request.user.pk)
            messages.success(request, _("Message #%(id)s scheduled.") % {"id": message.pk})
            return redirect("scheduled_messages:detail", pk=message.pk)
    # Shown with the form again too, so the preview survives an error and needs no script.
    preview = _preview(request, request.POST) if posted else None
    return render(request, "care_team/web/create.html", {"form": form, "preview": preview})


@provider_required
@require_GET
def occurrence_preview(request: HttpRequest) -> HttpResponse:
    """The fragment under the When field: the next occurrences, or why there are none (a
    400, which the create page's htmx config still shows)."""
    preview = _preview(request, request.GET)
    status = 400 if preview.error else 200
    return render(request, "care_team/web/_preview.html", {"preview": preview}, status=status)


def _preview(request: HttpRequest, data) -> Preview:
    form = PreviewForm(data, user=request.user)
    form.is_valid()  # an unknown patient or a too long phrase is left out, and prompted for
    cleaned = form.cleaned_data
    return phrase_preview(cleaned.get("patient"), cleaned.get("when", ""), now=timezone.now())


@provider_required
@require_GET
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(visible_messages(request.user), pk=pk)
    upcoming = []
    if message.status == MessageStatus.ACTIVE:
        upcoming = message_preview(message, count=PREVIEW_COUNT, after=timezone.now())
    context = {
        "message": message,
        "upcoming": upcoming,
        "deliveries": message_deliveries(message, request.user, limit=DELIVERIES_SHOWN),
        "delivery_count": message_delivery_count(message, request.user),
        "can_cancel": message.status in CANCELLABLE,
        "can_send_now": message.status != MessageStatus.CANCELLED,
    }
    return render(request, "care_team/web/detail.html", context)


@provider_required
@require_POST
def message_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(visible_messages(request.user), pk=pk)
    if message.status in CANCELLABLE:
        reason = f"cancelled in the web UI by user {request.user.pk}"
        message_cancel(message, reason=reason, actor=request.user)
        messages.success(request, _("Message #%(id)s cancelled.") % {"id": message.pk})
    else:
        status = message.get_status_display().lower()
        messages.error(request, _("A %(status)s message cannot be cancelled.") % {"status": status})
    return redirect("scheduled_messages:detail", pk=message.pk)


@provider_required
@require_POST
def message_send_now_view(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(visible_messages(request.user), pk=pk)
    try:
        delivery = message_send_now(message, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Delivery #%(id)s queued to send now.") % {"id": delivery.pk})
    return redirect("scheduled_messages:detail", pk=message.pk)


@provider_required
@require_POST
def patient_follow_up_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The companion follows up with the message's patient in 24 hours."""
    message = get_object_or_404(visible_messages(request.user), pk=pk)
    at = timezone.now() + timedelta(hours=24)
    try:
        follow_up_schedule(message.patient, at=at, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The companion will follow up with the patient in 24 hours."))
    return redirect("scheduled_messages:detail", pk=message.pk)


@provider_required
@require_GET
def delivery_chart(request: HttpRequest) -> HttpResponse:
    form = ChartFilterForm(request.GET, user=request.user)
    organization = form.cleaned_data.get("organization") if form.is_valid() else None
    days = deliveries_per_day(request.user, organization=organization)
    context = {"form": form, "days": days, "chart": stacked_bars(days),
               "show_filter": form.fields["organization"].queryset.count() > 1}  # fmt: skip
    return render(request, "care_team/web/chart.html", context)


@provider_required
@require_POST
def provider_language_view(request: HttpRequest) -> HttpResponse:
    """The provider's language for their pages, kept with their account ("" = browser's)."""
    language = request.POST.get("language", "")
    if language and language not in dict(settings.LANGUAGES):
        return HttpResponse(
            _("language: choose one of %(codes)s.")
            % {"codes": ", ".join(dict(settings.LANGUAGES))},
            status=400,
            content_type="text/plain",
        )
    provider_language_set(request.user, language)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = reverse("scheduled_messages:list")
    return redirect(back)
