"""dateutil's expansion of a rule, with a bound on the work spent between occurrences.

dateutil checks UNTIL and COUNT only when a period (a day of a DAILY rule, a month of a
MONTHLY one) yields an occurrence. A rule whose periods yield none is scanned period by
period to the year 9999: FREQ=DAILY;BYSETPOS=2 (the 2nd time of a day that has one)
costs about 7 s of CPU, and a web request, an API call or a dispatcher tick with it
stalls for that long.

Here the same expansion runs (dateutil's own loop, so every rule means what dateutil says
it means) with a meter on the helper that hands the loop each period: it stops the scan
when MAX_WORK_WITHOUT_OCCURRENCE units pass without an occurrence, or when the periods
pass a horizon date. A unit is one period plus a sixteenth of its days, which costs about
the same whatever the frequency (2 to 3 microseconds here), so the bound is one of CPU
time: about 12 ms, more than ten years of a DAILY rule, a century of a MONTHLY one.

dateutil's loop is private API: tests/test_rule_work_bound.py fails if an upgrade changes
what it relies on (dateutil.rrule.rrule._iter creating one dateutil.rrule._iterinfo and
asking it for each period's days).
"""

import types
from collections.abc import Iterator
from datetime import date, datetime

from dateutil import rrule as dateutil_rrule

MAX_WORK_WITHOUT_OCCURRENCE = 5000
_DAYS_PER_UNIT = 16


class ExpansionStopped(Exception):
    """Raised inside dateutil's loop to end it; never leaves this module."""


class ExpansionMeter:
    """The work since the last occurrence, and where the scan must end."""

    __slots__ = ("work", "limit", "horizon", "exhausted")

    def __init__(self, limit: int, horizon: date | None) -> None:
        self.work = 0.0
        self.limit = limit
        self.horizon = horizon
        self.exhausted = False  # True when the limit (not the horizon) ended the scan

    def spend(self, first_day: date, days: int) -> None:
        if self.horizon is not None and first_day > self.horizon:
            raise ExpansionStopped
        self.work += 1 + days / _DAYS_PER_UNIT
        if self.work > self.limit:
            self.exhausted = True
            raise ExpansionStopped


class _MeteredIterInfo(dateutil_rrule._iterinfo):
    """dateutil's per-period helper; each period it hands out is charged to the meter.
    (No __slots__ here: the base class's __init__ clears the attributes self.__slots__
    names, which must stay dateutil's list.)"""

    def __init__(self, rule: dateutil_rrule.rrule, meter: ExpansionMeter) -> None:
        super().__init__(rule)
        self.meter = meter

    def _charged(self, answer: tuple) -> tuple:
        dayset, start, end = answer
        self.meter.spend(date.fromordinal(self.yearordinal + start), max(end - start, 1))
        return answer

    def ydayset(self, year, month, day):
        return self._charged(super().ydayset(year, month, day))

    def mdayset(self, year, month, day):
        return self._charged(super().mdayset(year, month, day))

    def wdayset(self, year, month, day):
        return self._charged(super().wdayset(year, month, day))

    def ddayset(self, year, month, day):
        return self._charged(super().ddayset(year, month, day))


def _metered_loop(meter: ExpansionMeter) -> types.FunctionType:
    """dateutil's rrule._iter, reading `_iterinfo` from globals where it is ours."""
    loop = dateutil_rrule.rrule._iter
    scope = {**loop.__globals__, "_iterinfo": lambda rule: _MeteredIterInfo(rule, meter)}
    return types.FunctionType(loop.__code__, scope, loop.__name__, loop.__defaults__)


def bounded_walls(
    parsed: dateutil_rrule.rrule,
    *,
    not_after: datetime | None = None,
    limit: int = MAX_WORK_WITHOUT_OCCURRENCE,
    meter: ExpansionMeter | None = None,
) -> Iterator[datetime]:
    """The rule's occurrences in order, as iter(parsed) gives them, ending early when
    `limit` units of work pass without one or the scan passes `not_after`'s day (later
    occurrences on that day are still given: the caller filters by time)."""
    meter = meter or ExpansionMeter(limit, not_after.date() if not_after else None)
    occurrences = _metered_loop(meter)(parsed)
    while True:
        try:
            wall = next(occurrences)
        except (StopIteration, ExpansionStopped):
            return
        meter.work = 0.0
        yield wall
