"""The daily usage and engagement report of each organization: its deliveries by status
and channel, the failure rate, how late sends went out, medication adherence, and how
many check-ins and follow-ups were answered. Aggregates only: no patient, name, address
or text appears in it, so it may be e-mailed to the clinic's admins.

The day is a UTC day (00:00 to 24:00 UTC): an organization has no time zone of its own
(its patients each have theirs), and one day for every clinic keeps the reports of
clinics comparable. Each figure is one grouped query over every organization asked
for, bounded by an index on the day: deliveries by (status, occurrence_at), check-ins by
(patient, local_date), follow-ups by (patient, due_at).

Definitions:
- failure rate: failed and expired over sent, failed and expired (cancelled left out);
- lateness: sent_at minus the occurrence time, of the deliveries sent, median and p95;
- adherence: medication reminders sent that day and answered "taken", over those sent
  (a snoozed one is left out: its repeat is the dose that gets the answer);
- check-ins answered: the patient wrote or pressed a button after the check-in's moment
  (their last interaction is later), over the check-ins scheduled for that day;
- follow-ups answered: answered within FOLLOW_UP_RESPONSE_HOURS, over those sent that day
  (the last of them may still be answered after the report).
"""

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Aggregate, Count, DurationField, F, FloatField, Q
from django.db.models.expressions import ExpressionWrapper

from outreach.models import CheckIn, CheckInStatus, FollowUp, FollowUpStatus
from patients.models import Channel, Organization
from scheduling.models import (
    AckAction,
    Delivery,
    DeliveryStatus,
    MessageKind,
)

STATUSES = [status.value for status in DeliveryStatus]
CHANNELS = [channel.value for channel in Channel]
LOST = (DeliveryStatus.FAILED, DeliveryStatus.EXPIRED)
# No report before this day: nothing was sent then, and the day's bounds stay in range.
EARLIEST_DAY = date(2000, 1, 1)


class SecondsPercentile(Aggregate):
    """PostgreSQL's percentile_cont over an interval, in seconds."""

    function = "PERCENTILE_CONT"
    template = (
        "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM %(expressions)s))"
    )
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass
class ChannelCounts:
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def failure_rate(self) -> float | None:
        lost = sum(self.by_status[status] for status in LOST)
        decided = lost + self.by_status[DeliveryStatus.SENT]
        return round(lost / decided, 4) if decided else None


@dataclass
class DailyReport:
    organization_id: int
    organization_slug: str
    organization_name: str
    day: date
    channels: dict[str, ChannelCounts] = field(default_factory=dict)
    lateness_median_seconds: float | None = None
    lateness_p95_seconds: float | None = None
    doses_due: int = 0
    doses_taken: int = 0
    doses_missed: int = 0
    doses_skipped: int = 0
    check_ins: int = 0
    check_ins_answered: int = 0
    follow_ups: int = 0
    follow_ups_answered: int = 0

    @property
    def all_channels(self) -> ChannelCounts:
        total = ChannelCounts()
        for counts in self.channels.values():
            for status, number in counts.by_status.items():
                total.by_status[status] += number
        return total

    @property
    def adherence(self) -> float | None:
        return _share(self.doses_taken, self.doses_due)

    @property
    def check_in_response_rate(self) -> float | None:
        return _share(self.check_ins_answered, self.check_ins)

    @property
    def follow_up_response_rate(self) -> float | None:
        return _share(self.follow_ups_answered, self.follow_ups)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def daily_reports(organizations: list[Organization], day: date) -> list[DailyReport]:
    """One report per organization given, in the order given."""
    reports = {org.pk: DailyReport(org.pk, org.slug, org.name, day) for org in organizations}
    if reports:
        ids = list(reports)
        _count_deliveries(reports, ids, day)
        _measure_lateness(reports, ids, day)
        _count_doses(reports, ids, day)
        _count_check_ins(reports, ids, day)
        _count_follow_ups(reports, ids, day)
    return list(reports.values())


def _day_deliveries(ids: list[int], day: date, *, statuses=STATUSES):
    start, end = day_bounds(day)
    # Every status named, so the (status, occurrence_at) index is read once per status
    # over the day instead of the table being scanned.
    return Delivery.objects.filter(
        status__in=statuses,
        occurrence_at__gte=start,
        occurrence_at__lt=end,
        message__organization_id__in=ids,
    )


def _count_deliveries(reports: dict[int, DailyReport], ids: list[int], day: date) -> None:
    rows = (
        _day_deliveries(ids, day)
        .values_list("message__organization_id", "channel", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for organization_id, channel, status, number in rows:
        counts = reports[organization_id].channels.setdefault(channel, ChannelCounts())
        counts.by_status[status] += number


def _measure_lateness(reports: dict[int, DailyReport], ids: list[int], day: date) -> None:
    late = ExpressionWrapper(F("sent_at") - F("occurrence_at"), output_field=DurationField())
    rows = (
        _day_deliveries(ids, day, statuses=[DeliveryStatus.SENT])
        .filter(sent_at__gte=day_bounds(day)[0])  # never before its moment: bounds either index
        .values("message__organization_id")
        .annotate(median=SecondsPercentile(late, 0.5), p95=SecondsPercentile(late, 0.95))
        .order_by()
    )
    for row in rows:
        report = reports[row["message__organization_id"]]
        report.lateness_median_seconds = _rounded(row["median"])
        report.lateness_p95_seconds = _rounded(row["p95"])


def _count_doses(reports: dict[int, DailyReport], ids: list[int], day: date) -> None:
    rows = (
        _day_deliveries(ids, day, statuses=[DeliveryStatus.SENT])
        .filter(sent_at__gte=day_bounds(day)[0], message__kind=MessageKind.MEDICATION)
        .exclude(acknowledgement__action=AckAction.SNOOZED)
        .values("message__organization_id")
        .annotate(
            due=Count("pk"),
            taken=Count("pk", filter=Q(acknowledgement__action=AckAction.TAKEN)),
            missed=Count("pk", filter=Q(acknowledgement__action=AckAction.MISSED)),
            skipped=Count("pk", filter=Q(acknowledgement__action=AckAction.SKIPPED)),
        )
        .order_by()
    )
    for row in rows:
        report = reports[row["message__organization_id"]]
        report.doses_due, report.doses_taken = row["due"], row["taken"]
        report.doses_missed, report.doses_skipped = row["missed"], row["skipped"]


def _count_check_ins(reports: dict[int, DailyReport], ids: list[int], day: date) -> None:
    start, end = day_bounds(day)
    rows = (
        CheckIn.objects.filter(
            patient__organization_id__in=ids,
            # A local date is within a day of the UTC one: the unique (patient, local_date)
            # index bounds the read; due_at then picks the UTC day.
            local_date__range=(day - timedelta(days=1), day + timedelta(days=1)),
            due_at__gte=start,
            due_at__lt=end,
            status=CheckInStatus.SCHEDULED,
        )
        .values("patient__organization_id")
        .annotate(
            sent=Count("pk"),
            answered=Count("pk", filter=Q(patient__last_interaction_at__gte=F("due_at"))),
        )
        .order_by()
    )
    for row in rows:
        report = reports[row["patient__organization_id"]]
        report.check_ins, report.check_ins_answered = row["sent"], row["answered"]


def _count_follow_ups(reports: dict[int, DailyReport], ids: list[int], day: date) -> None:
    start, end = day_bounds(day)
    rows = (
        FollowUp.objects.filter(
            patient__organization_id__in=ids,
            due_at__gte=start - timedelta(days=1),  # sent at or after its due moment
            due_at__lt=end,
            sent_at__gte=start,
            sent_at__lt=end,
            status=FollowUpStatus.SCHEDULED,
        )
        .values("patient__organization_id")
        .annotate(sent=Count("pk"), answered=Count("pk", filter=Q(responded_at__isnull=False)))
        .order_by()
    )
    for row in rows:
        report = reports[row["patient__organization_id"]]
        report.follow_ups, report.follow_ups_answered = row["sent"], row["answered"]


CSV_COLUMNS = [
    "date",
    "organization",
    "channel",
    "deliveries",
    *STATUSES,
    "failure_rate",
    "lateness_median_seconds",
    "lateness_p95_seconds",
    "doses_due",
    "doses_taken",
    "doses_missed",
    "doses_skipped",
    "adherence",
    "check_ins",
    "check_ins_answered",
    "check_in_response_rate",
    "follow_ups",
    "follow_ups_answered",
    "follow_up_response_rate",
]


def report_rows(report: DailyReport) -> list[dict]:
    """A row for all channels together (with the organization's other figures), then one
    per channel that had deliveries."""
    rows = [
        {
            **_channel_row(report, "all", report.all_channels),
            "lateness_median_seconds": report.lateness_median_seconds,
            "lateness_p95_seconds": report.lateness_p95_seconds,
            "doses_due": report.doses_due,
            "doses_taken": report.doses_taken,
            "doses_missed": report.doses_missed,
            "doses_skipped": report.doses_skipped,
            "adherence": report.adherence,
            "check_ins": report.check_ins,
            "check_ins_answered": report.check_ins_answered,
            "check_in_response_rate": report.check_in_response_rate,
            "follow_ups": report.follow_ups,
            "follow_ups_answered": report.follow_ups_answered,
            "follow_up_response_rate": report.follow_up_response_rate,
        }
    ]
    for channel in CHANNELS:
        if channel in report.channels:
            rows.append(_channel_row(report, channel, report.channels[channel]))
    return rows


def reports_csv(reports: list[DailyReport]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for report in reports:
        for row in report_rows(report):
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return out.getvalue()


def _channel_row(report: DailyReport, channel: str, counts: ChannelCounts) -> dict:
    return {
        "date": report.day.isoformat(),
        "organization": report.organization_slug,
        "channel": channel,
        "deliveries": counts.total,
        **counts.by_status,
        "failure_rate": counts.failure_rate,
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
