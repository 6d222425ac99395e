"""Reads for the web UI. Every queryset goes through `scoped`, so another
organization's rows are simply absent."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db.models import Count, F, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from patients.access import scoped
from patients.models import Organization, Patient
from scheduling.message_templates import default_templates
from scheduling.models import Delivery, DeliveryStatus, MessageTemplate, ScheduledMessage
from scheduling.template_syntax import template_parameters

CHART_DAYS = 14


def visible_messages(user) -> QuerySet[ScheduledMessage]:
    # Upcoming first; finished messages (no next run) after them, newest first.
    return scoped(ScheduledMessage.objects.select_related("patient"), user).order_by(
        F("next_run_at").asc(nulls_last=True), "-created_at", "-pk"
    )


def visible_patients(user) -> QuerySet[Patient]:
    return scoped(Patient.objects.all(), user)


def visible_organizations(user) -> QuerySet[Organization]:
    return scoped(Organization.objects.all(), user)


def filter_messages(
    messages: QuerySet[ScheduledMessage],
    *,
    status: str = "",
    patient: Patient | None = None,
    channel: str = "",
) -> QuerySet[ScheduledMessage]:
    if status:
        messages = messages.filter(status=status)
    if patient is not None:
        messages = messages.filter(patient=patient)
    if channel:
        messages = messages.filter(channel=channel)
    return messages


def message_deliveries(message: ScheduledMessage, user, *, limit: int) -> list[Delivery]:
    """The message's latest deliveries, each with its attempts (two queries in all)."""
    deliveries = scoped(Delivery.objects.filter(message=message), user)
    return list(deliveries.prefetch_related("attempt_log").order_by("-occurrence_at")[:limit])


def message_delivery_count(message: ScheduledMessage, user) -> int:
    return scoped(Delivery.objects.filter(message=message), user).count()


@dataclass(frozen=True)
class DayCounts:
    day: date
    counts: dict[str, int]  # every DeliveryStatus value, in the choices' order

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def deliveries_per_day(
    user,
    *,
    days: int = CHART_DAYS,
    organization: Organization | None = None,
    today: date | None = None,
) -> list[DayCounts]:
    """Deliveries per UTC day of their occurrence and per status, oldest day first; days
    without any are kept (all zero) so the chart's axis has no holes."""
    today = today or timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    deliveries = scoped(Delivery.objects.filter(occurrence_at__gte=start), user)
    if organization is not None:
        deliveries = deliveries.filter(message__organization=organization)
    rows = (
        deliveries.annotate(day=TruncDate("occurrence_at", tzinfo=UTC))
        .values("day", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    table = {
        first + timedelta(days=offset): dict.fromkeys(DeliveryStatus.values, 0)
        for offset in range(days)
    }
    for row in rows:
        if row["day"] in table and row["status"] in table[row["day"]]:
            table[row["day"]][row["status"]] = row["n"]
    return [DayCounts(day, counts) for day, counts in table.items()]


def available_templates(user) -> dict[str, set[str]]:
    """Template keys the user may choose, each with the parameters the care team must
    fill in ({name} comes from the patient): built-in defaults, global rows and the
    user's organizations' own."""
    bodies = [(key, body) for (key, _), body in default_templates().items()]
    rows = scoped(MessageTemplate.objects.all(), user) | MessageTemplate.objects.filter(
        organization__isnull=True  # global defaults belong to no organization: every clinic's
    )
    bodies += list(rows.values_list("key", "body"))
    found: dict[str, set[str]] = {}
    for key, body in bodies:
        try:
            names = template_parameters(body) - {"name"}
        except ValidationError:
            names = set()  # a broken row is refused with its reason when chosen
        found.setdefault(key, set()).update(names)
    return dict(sorted(found.items()))
