"""The operators' status API and the daily report as CSV.

/api/scheduler/status/ is for operators only (active superusers, by token or session): it
spans every organization, so a clinic's token gets 403. /api/scheduler/reports/daily.csv
is for every provider, scoped to the organizations of the token's user.
"""

from datetime import date, timedelta
from types import SimpleNamespace

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from care_team.api.health import health_answer
from care_team.api.status_serializers import SchedulerStatusSerializer
from operations.reports import EARLIEST_DAY, daily_reports, reports_csv
from operations.status import scheduler_status
from patients.access import is_operator, organization_ids
from patients.models import Organization
from patients.tenant_wall import wall_is_up, wall_up


class IsOperator(BasePermission):
    message = "Only operators (superusers) may read the scheduler's status."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and is_operator(request.user))


class SchedulerStatusView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(
        summary="The scheduler's status, for operators",
        description=(
            "Sections: the health checks (cached for HEALTH_CACHE_SECONDS), Beat's last "
            "tick, the workers answering, each channel's queue depth, breaker and held "
            "backlog, the database's view of sending (last send, sends per minute over the "
            "last hour, oldest queued and sending delivery, failure rate per channel), open "
            "incidents and the latest runs of the system's jobs. Operators (superusers) "
            "only: a clinic's token gets 403."
        ),
        responses={
            200: SchedulerStatusSerializer,
            403: OpenApiResponse(description="Not an operator."),
        },
    )
    def get(self, request):
        return Response(scheduler_status(health=health_answer()))


def parse_report_date(value: str | None, *, today: date) -> date:
    """The report's day: YYYY-MM-DD, yesterday (UTC) when not given; a clear 400 otherwise."""
    if value is None or value == "":
        return today - timedelta(days=1)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            {"date": f"{value[:40]!r} is not a date: give YYYY-MM-DD, e.g. 2026-03-01."}
        ) from None
    if len(value) != 10:  # fromisoformat also takes 20260301
        raise ValidationError({"date": f"{value[:40]!r}: give the date as YYYY-MM-DD."})
    if day > today:
        raise ValidationError({"date": f"{value} is in the future: the report has no data yet."})
    if day < EARLIEST_DAY:
        raise ValidationError({"date": f"{value} is before {EARLIEST_DAY}: there is no report."})
    return day


class CsvRenderer(BaseRenderer):
    """Lets a client that asks for text/csv only be answered; an error then comes as
    `field,message` lines."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, str):
            return data.encode()
        lines = [f"{name},{_flat(messages)}" for name, messages in (data or {}).items()]
        return ("\n".join(lines) + "\n").encode()


def _flat(messages) -> str:
    text = " ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
    return '"' + text.replace('"', '""') + '"'


class AcceptHeaderOnly(DefaultContentNegotiation):
    """The Accept header alone chooses between JSON (errors) and CSV: DRF's `?format=`
    would otherwise answer 404 to an unknown value, which this endpoint's query does not
    document."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class NoFormatParameter(AutoSchema):
    def _get_format_parameters(self):
        return []


class DailyReportCsvView(APIView):
    renderer_classes = [JSONRenderer, CsvRenderer]
    content_negotiation_class = AcceptHeaderOnly
    schema = NoFormatParameter()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # As for the other care-team endpoints: the database's own wall under the scoping.
        if request.user.is_authenticated and not wall_is_up():
            wall_up(organization_ids(request.user))

    @extend_schema(
        summary="The daily usage report, as CSV",
        description=(
            "One row per organization of the token's user (an operator: every organization) "
            "for one UTC day: deliveries by status and channel, failure rate, lateness, "
            "adherence, check-in and follow-up response rates. Aggregates only."
        ),
        parameters=[
            OpenApiParameter(
                "date",
                OpenApiTypes.DATE,
                description="The day, YYYY-MM-DD (UTC); yesterday when left out.",
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The report."),
            400: OpenApiResponse(description="A date that is not YYYY-MM-DD or in the future."),
        },
    )
    def get(self, request):
        day = parse_report_date(request.query_params.get("date"), today=timezone.now().date())
        allowed = organization_ids(request.user)
        organizations = Organization.objects.order_by("slug")
        if allowed is not None:
            organizations = organizations.filter(pk__in=allowed)
        response = HttpResponse(
            reports_csv(daily_reports(list(organizations), day)), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="daily-report-{day}.csv"'
        return response
