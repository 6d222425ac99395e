"""Geometry of the deliveries-per-day chart: stacked bars drawn as server-side SVG, so
the page needs no chart library and reads the same with scripts off."""

from dataclasses import dataclass

from care_team.web.queries import DayCounts
from scheduling.models import DeliveryStatus

WIDTH, PLOT_HEIGHT, LABEL_HEIGHT = 420, 150, 18
# Bottom to top: outcomes first, work in progress on top.
STACK_ORDER = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.CANCELLED,
    DeliveryStatus.SENDING,
    DeliveryStatus.QUEUED,
)


@dataclass(frozen=True)
class Segment:
    status: str
    label: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    day_counts: DayCounts
    x: float
    width: float
    label_x: float
    segments: list[Segment]
    columns: list[int]  # the day's count of each status, in STACK_ORDER: the table's row


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int  # the total of the busiest day: the top of the scale
    width: int = WIDTH
    plot_height: int = PLOT_HEIGHT
    height: int = PLOT_HEIGHT + LABEL_HEIGHT
    legend: tuple = tuple((status.value, status.label) for status in STACK_ORDER)


def stacked_bars(days: list[DayCounts]) -> Chart:
    peak = max((day.total for day in days), default=0)
    scale = PLOT_HEIGHT / max(peak, 1)
    slot = WIDTH / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        top, segments = float(PLOT_HEIGHT), []
        for status in STACK_ORDER:
            count = day.counts.get(status.value, 0)
            if count:
                height = count * scale
                top -= height
                segments.append(Segment(status.value, status.label, count, top, height))
        x = index * slot + slot * 0.15
        columns = [day.counts.get(status.value, 0) for status in STACK_ORDER]
        bars.append(Bar(day, x, slot * 0.7, index * slot + slot / 2, segments, columns))
    return Chart(bars=bars, peak=peak)
