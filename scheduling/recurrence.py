"""RFC 5545 recurrence rules, read in local time, answered in UTC.

Policy (also in the README, and tested in tests/test_recurrence.py):
- Rules of a day or longer (DAILY, WEEKLY, MONTHLY, YEARLY) keep their local wall-clock
  time: 09:00 stays 09:00 across DST.
- Pure interval rules shorter than a day ("every 2h": HOURLY/MINUTELY/SECONDLY with no
  BY* parts) step in real elapsed time from the start, so a dose every 2 hours stays
  2 hours apart on the night the clocks change.
- A local time that does not exist (spring forward) is sent at the first valid minute
  after the gap instead of being dropped (RFC 5545 would skip it).
- An ambiguous local time (fall back) is sent once, at its first occurrence.
- Day 29-31 of a month that is shorter is sent on its last day (RFC 5545 would skip it);
  BYMONTHDAY=-1 is the last day of every month.
- Local times that resolve to the same instant (several in one DST gap) are sent once.
"""

import calendar
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, rrule, rrulestr

from scheduling.bounded_expansion import (
    MAX_WORK_WITHOUT_OCCURRENCE,
    ExpansionMeter,
    bounded_walls,
)

logger = logging.getLogger(__name__)

_PURE_INTERVAL_KEYS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST"}
_SUB_DAILY = {HOURLY, MINUTELY, SECONDLY}
_UNTIL_UTC = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)


def rule_body(rule: str) -> str:
    text = rule.strip()
    return text[len("RRULE:") :] if text.upper().startswith("RRULE:") else text


def rule_parts(rule: str) -> dict[str, str]:
    """{"FREQ": "DAILY", ...}; ValueError on a part that is not NAME=VALUE."""
    parts = {}
    for part in filter(None, rule_body(rule).split(";")):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{part!r} is not a NAME=VALUE part")
        parts[name.strip().upper()] = value.strip()
    return parts


def local_wall_time(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def resolve_local(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time, by the DST policy above."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # fold=0: the earlier of two
    if local_wall_time(first, zone) == wall:
        return first
    # In a gap: fold=0 reads it with the old offset (after the jump), fold=1 with the
    # new one (before it). The jump lies between; find the first second past the gap.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if local_wall_time(middle, zone) > wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


class Rule:
    """One parsed rule, anchored at its start; iterates occurrences as UTC instants."""

    def __init__(self, rule: str, *, starts_at: datetime, zone_name: str) -> None:
        self.zone = ZoneInfo(zone_name)
        parts = rule_parts(rule)
        self.elapsed = (
            set(parts) <= _PURE_INTERVAL_KEYS and _frequency(parts.get("FREQ")) in _SUB_DAILY
        )
        self.zone_for_expansion = ZoneInfo("UTC") if self.elapsed else self.zone
        self.start_wall = local_wall_time(starts_at, self.zone_for_expansion)
        just_before = local_wall_time(starts_at - timedelta(seconds=1), self.zone_for_expansion)
        if self.start_wall - just_before > timedelta(seconds=1):
            # The start is the end of a DST gap, where every time in the gap is sent:
            # anchor at the gap's start so that a rule for 02:30 still counts that day.
            self.start_wall = just_before + timedelta(seconds=1)
        body = _until_as_local(rule_body(rule), self.zone_for_expansion)
        parsed = rrulestr(body, dtstart=self.start_wall)
        if not isinstance(parsed, rrule):
            raise ValueError("only a single RRULE line is accepted")
        self.rrule = parsed
        self.body = rule_body(rule)
        self._scan: _Scan | None = None
        self.month_days = _month_days_past_28(parts) if parsed._freq == MONTHLY else ()

    def after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly later than `moment` (UTC), or None when it ends."""
        for occurrence in self._from(moment):
            if occurrence > moment:
                return occurrence
        return None

    def between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Occurrences later than start and not later than end."""
        for occurrence in self._from(start):
            if occurrence > end:
                return
            if occurrence > start:
                yield occurrence

    def _from(self, moment: datetime) -> Iterator[datetime]:
        """Occurrences in order from around `moment`, each once, in UTC.

        The scan goes on from where the last call left it when `moment` is not earlier:
        a preview or the dispatcher's catch-up asks for one occurrence after another, and
        each would otherwise expand the rule again from its start."""
        wall = local_wall_time(moment, self.zone_for_expansion)
        # An occurrence moved out of a DST gap is later than its wall time by the gap
        # (at most an hour or two), so start the scan that far back and filter here.
        cursor = wall - timedelta(hours=6) if not self.elapsed else wall
        scan = self._scan
        if scan is None or cursor < scan.cursor or (scan.previous and moment < scan.previous):
            scan = self._scan = _Scan(self._walls(cursor), cursor, self.zone_for_expansion)
        return scan.instants_from(cursor)

    def _walls(self, cursor: datetime) -> Iterator[datetime]:
        """The local occurrences from the start, or from a little before `cursor` when
        that means the same. Bounded (bounded_expansion.py): a rule with no occurrence
        for more than about ten years of its periods simply ends, at the dispatcher as in
        a preview."""
        meter = ExpansionMeter(MAX_WORK_WITHOUT_OCCURRENCE, None)
        if self.month_days:
            yield from _with_month_ends(self.rrule, self.month_days, meter)
        else:
            yield from bounded_walls(self._anchored_near(cursor), meter=meter)
        if meter.exhausted:
            logger.warning("rule %r: no further occurrence within the work bound", self.body)

    def _anchored_near(self, cursor: datetime) -> rrule:
        """The rule started again a step or more before `cursor`, when that changes none of
        its occurrences: a rule shorter than a day without COUNT only ever occurs a whole
        number of steps (INTERVAL times its unit) after its start, and its BY parts
        filter each candidate on its own. dateutil expands from the start, so a year-old
        "every 5 minutes" would otherwise walk through 100,000 steps at every dispatch."""
        step = _STEP_SECONDS.get(self.rrule._freq)
        if step is None or self.rrule._count is not None:
            return self.rrule
        period = timedelta(seconds=step * self.rrule._interval)
        steps = (cursor - self.start_wall) // period - 1
        if steps <= 0:
            return self.rrule
        return self.rrule.replace(dtstart=self.start_wall + steps * period)


_STEP_SECONDS = {HOURLY: 3600, MINUTELY: 60, SECONDLY: 1}


class _Scan:
    """One pass over a rule's occurrences that later calls resume: `head` is the next
    occurrence, found and not yet passed; `previous` the last one passed."""

    def __init__(self, walls: Iterator[datetime], cursor: datetime, zone: ZoneInfo) -> None:
        self.walls = walls
        self.cursor = cursor
        self.zone = zone
        self.head: datetime | None = None
        self.previous: datetime | None = None

    def instants_from(self, cursor: datetime) -> Iterator[datetime]:
        while True:
            if self.head is None:
                wall = next(self.walls, None)
                if wall is None:
                    return
                if wall < cursor:
                    continue  # before the scan's window: not worth resolving
                instant = resolve_local(wall, self.zone)
                if self.previous is not None and instant <= self.previous:
                    continue  # several local times that are one instant are sent once
                self.head = instant
            yield self.head
            self.previous, self.head = self.head, None


# Parts that filter whole days or months. With a sub-daily FREQ, dateutil steps minute
# by minute (or hour by hour) through every rejected candidate, so a rule such as
# FREQ=MINUTELY;BYSETPOS=5 or one that never matches can take minutes of CPU to answer.
_DAY_LEVEL_PARTS = {"BYSETPOS", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH"}


def check_rule_is_practical(rule: str, *, starts_at: datetime, zone_name: str) -> None:
    """ValueError, said plainly, for a rule the scheduler cannot afford to expand: a
    sub-daily rule filtered by day-level parts, more times a day than minutes, a BYSETPOS
    past the times a period has, or no occurrence in ten years (a week for sub-daily
    rules). The search is bounded in dates and in work (bounded_expansion.py), so this
    answers within milliseconds whatever the rule."""
    parts = rule_parts(rule)
    sub_daily = _frequency(parts.get("FREQ")) in _SUB_DAILY
    if sub_daily and (found := sorted(_DAY_LEVEL_PARTS & set(parts))):
        raise ValueError(
            f"{', '.join(found)} cannot be combined with FREQ={parts['FREQ']}; "
            "use a DAILY, WEEKLY or MONTHLY rule with BYHOUR and BYMINUTE"
        )
    frequency = parts.get("FREQ", "").upper()
    if frequency == "SECONDLY" and (by_parts := sorted(set(parts) - _PURE_INTERVAL_KEYS)):
        # dateutil steps second by second to the hour or minute asked: a second of CPU.
        raise ValueError(
            f"{', '.join(by_parts)} cannot be combined with FREQ=SECONDLY (for tests and "
            "demos: an interval only)"
        )
    for part in ("BYYEARDAY", "BYWEEKNO"):  # RFC 5545 allows these with YEARLY only
        if part in parts and frequency != "YEARLY":
            raise ValueError(f"{part} is only allowed with FREQ=YEARLY")
    parsed = Rule(rule, starts_at=starts_at, zone_name=zone_name)
    _check_times_a_day(parsed.rrule)
    _check_set_positions(parsed.rrule)
    _check_nth_weekdays(parsed.rrule)
    horizon = timedelta(days=7) if sub_daily else timedelta(days=3653)
    until = parsed.rrule._until
    if until is not None and until < parsed.start_wall:
        raise ValueError("its UNTIL is before the first occurrence")
    end = parsed.start_wall + horizon if until is None else min(until, parsed.start_wall + horizon)
    walls = bounded_walls(parsed.rrule.replace(count=None, until=None), not_after=end)
    if next((wall for wall in walls if wall <= end), None) is None:
        span = "a week" if sub_daily else "ten years"
        raise ValueError(f"the rule has no occurrence within {span} of its start")


# More occurrences a day than minutes is a flood, and dateutil would build each day's
# list of times (up to 86,400) for every day it looks at.
MAX_TIMES_A_DAY = 24 * 60
_PERIOD_NAMES = {DAILY: "day", WEEKLY: "week", MONTHLY: "month"}
_PERIOD_DAYS = {DAILY: 1, WEEKLY: 7, MONTHLY: 31}


def _times_a_day(parsed: rrule) -> int:
    return (
        len(parsed._byhour or (0,)) * len(parsed._byminute or (0,)) * len(parsed._bysecond or (0,))
    )


def _check_times_a_day(parsed: rrule) -> None:
    if parsed._freq in _SUB_DAILY:
        return  # one time per step; the step is checked elsewhere (SECONDLY)
    if (times := _times_a_day(parsed)) > MAX_TIMES_A_DAY:
        raise ValueError(
            f"BYHOUR, BYMINUTE and BYSECOND ask for {times} times a day; at most "
            f"{MAX_TIMES_A_DAY} (one a minute)"
        )


def _check_set_positions(parsed: rrule) -> None:
    """BYSETPOS picks the n-th of a period's times; a period never has more than its
    days times the times of a day, so a position past that can never be met."""
    if not parsed._bysetpos:
        return
    most = _PERIOD_DAYS.get(parsed._freq, 366) * _times_a_day(parsed)
    if all(abs(position) > most for position in parsed._bysetpos):
        period = _PERIOD_NAMES.get(parsed._freq, "year")
        position = min(parsed._bysetpos, key=abs)
        raise ValueError(
            f"BYSETPOS={position} asks for the {_ordinal(abs(position))} time in each {period}, "
            f"but this rule has at most {most} in a {period}"
        )


def _check_nth_weekdays(parsed: rrule) -> None:
    """BYDAY=20MO in a month (dateutil fails with an IndexError deep in its loop)."""
    in_months = parsed._freq == MONTHLY or (parsed._freq < MONTHLY and parsed._bymonth)
    most, within = (5, "month") if in_months else (53, "year")
    for weekday, number in parsed._bynweekday or ():
        if abs(number) > most:
            day = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[weekday]
            raise ValueError(f"BYDAY={number}{day}: a {within} has at most {most} of each weekday")


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _frequency(name: str | None) -> int | None:
    names = ["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY"]
    return names.index(name.upper()) if name and name.upper() in names else None


def _until_as_local(body: str, zone: ZoneInfo) -> str:
    """UNTIL...Z (UTC, as RFC 5545 writes it) turned into the floating local time dateutil
    needs beside a local start."""

    def to_local(match: re.Match) -> str:
        instant = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return "UNTIL=" + local_wall_time(instant, zone).strftime("%Y%m%dT%H%M%S")

    return _UNTIL_UTC.sub(to_local, body)


def _month_days_past_28(parts: dict[str, str]) -> tuple[int, ...]:
    """The BYMONTHDAY values (positive and negative) when one is 29-31, a day shorter
    months lack; only without BYDAY, BYSETPOS, BYYEARDAY or BYWEEKNO, where "the last
    day instead" has one clear meaning."""
    if {"BYSETPOS", "BYDAY", "BYYEARDAY", "BYWEEKNO"} & set(parts) or "BYMONTHDAY" not in parts:
        return ()
    days = tuple(int(day) for day in parts["BYMONTHDAY"].split(","))
    return days if any(day > 28 for day in days) else ()


def _with_month_ends(
    parsed: rrule, month_days: tuple[int, ...], meter: ExpansionMeter
) -> Iterator[datetime]:
    """The rule's occurrences, with day 29-31 sent on the last day of a shorter month.

    The rule is expanded with the last day added, and each candidate kept when it is one
    of the asked days or stands in for one; COUNT is applied here, to what is kept.
    """
    count = parsed._count
    extended = parsed.replace(bymonthday=(*month_days, -1), count=None)
    kept = 0
    for wall in bounded_walls(extended, meter=meter):
        month_length = calendar.monthrange(wall.year, wall.month)[1]
        asked = wall.day in month_days or wall.day - month_length - 1 in month_days
        stands_in = wall.day == month_length and any(day > month_length for day in month_days)
        if asked or stands_in:
            kept += 1
            yield wall
            if count is not None and kept >= count:
                return
