"""When a scheduled message's occurrences fall, and when each may be sent.

An occurrence has two times: `at`, when its rule says (and the key of its Delivery),
and `send_at`, the same moved past the patient's quiet hours. Occurrences whose moved
times would coincide (every 30 minutes through the night) are sent once, at the end of
the quiet period: the patient gets one reminder at 07:00, not sixteen.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduling.models import ScheduledMessage
from scheduling.recurrence import Rule, local_wall_time, resolve_local


@dataclass(frozen=True)
class Occurrence:
    at: datetime
    send_at: datetime


@dataclass(frozen=True)
class QuietHours:
    """A local period, for example 22:00-07:00, in which nothing is sent."""

    start: time
    end: time
    zone: ZoneInfo

    def contains(self, wall: datetime) -> bool:
        moment = wall.time()
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def release(self, instant: datetime) -> datetime:
        """The instant itself, or the end of the quiet period it falls in."""
        wall = local_wall_time(instant, self.zone)
        if not self.contains(wall):
            return instant
        end_day = wall.date()
        if self.start > self.end and wall.time() >= self.start:
            end_day += timedelta(days=1)
        return max(instant, resolve_local(datetime.combine(end_day, self.end), self.zone))


class Schedule:
    """The occurrences of one message: its rule (or single time) and its quiet hours."""

    def __init__(self, message: ScheduledMessage) -> None:
        self.starts_at = message.starts_at
        self.rule = (
            Rule(message.recurrence, starts_at=message.starts_at, zone_name=message.zone_name)
            if message.recurrence
            else None
        )
        patient = message.patient
        self.quiet = None
        if patient.quiet_hours_start is not None and not message.ignore_quiet_hours:
            start, end = patient.quiet_hours_start, patient.quiet_hours_end
            self.quiet = QuietHours(start, end, patient.zone)

    def occurrence(self, at: datetime) -> Occurrence:
        return Occurrence(at, self.quiet.release(at) if self.quiet else at)

    def first(self, *, not_before: datetime) -> Occurrence | None:
        """The first occurrence to send: the start, or for a rule whose start has passed,
        its first occurrence from `not_before` on."""
        if self.rule is None:
            return self.occurrence(self.starts_at)
        earliest = max(self.starts_at, not_before) - timedelta(microseconds=1)
        at = self.rule.after(earliest)
        return self.occurrence(at) if at else None

    def after(self, previous: Occurrence) -> Occurrence | None:
        """The next occurrence sent later than `previous`.

        Occurrences up to previous.send_at were moved onto it by quiet hours (or are it),
        so the next one to send is the rule's first after that instant.
        """
        if self.rule is None:
            return None
        at = self.rule.after(previous.send_at)
        return self.occurrence(at) if at else None

    def upcoming(self, count: int, *, after: datetime) -> list[Occurrence]:
        """The next `count` occurrences sent after `after`: the preview."""
        found = []
        current = self.first(not_before=after)
        while current is not None and len(found) < count:
            if current.send_at > after:
                found.append(current)
            current = self.after(current)
        return found

    def due(self, current: Occurrence, now: datetime) -> "DueOccurrences":
        """From `current` (due), the occurrences also due by now. After an outage only the
        latest is sent; the ones before it are missed."""
        missed = []
        following = self.after(current)
        while following is not None and following.send_at <= now:
            missed.append(current)
            current, following = following, self.after(following)
        return DueOccurrences(missed, current, following)


@dataclass(frozen=True)
class DueOccurrences:
    missed: list[Occurrence]
    latest: Occurrence
    following: Occurrence | None


@dataclass(frozen=True)
class PreviewRow:
    local: datetime  # when it is sent, in the message's time zone
    utc: datetime
    moved_from_local: datetime | None  # the rule's time, when quiet hours moved it


def message_preview(message: ScheduledMessage, *, count: int, after: datetime) -> list[PreviewRow]:
    """The next `count` occurrences of a message as a care team reads them."""
    zone = ZoneInfo(message.zone_name)
    return [
        PreviewRow(
            local=occurrence.send_at.astimezone(zone),
            utc=occurrence.send_at,
            moved_from_local=(
                occurrence.at.astimezone(zone) if occurrence.send_at != occurrence.at else None
            ),
        )
        for occurrence in Schedule(message).upcoming(count, after=after)
    ]
