"""Schedule phrases: what care teams and patients type, read as a start time and an RRULE.

Phrases are read in the patient's time zone, case-insensitively, words separated by spaces
(commas only between days). TIME is H:MM or HH:MM (seconds allowed for one-time messages),
optionally after "at". DAYS is one or more of mon..sun / monday..sunday, weekdays,
weekends, separated by "," or "and". N is a whole number from 1 to 1000.

One time (rrule ""):
    YYYY-MM-DD TIME | YYYY-MM-DDTHH:MM[:SS]   2025-04-15 14:00, 2025-04-15T14:00:00
    today TIME | tomorrow TIME                tomorrow at 15:30
    WEEKDAY TIME                              monday 09:00 (the next Monday after today)
    in N minutes|hours|days|weeks             in 30 minutes, in 2h, in 45 min, in 3 days

Repeating:
    daily TIME | every day TIME | every N days TIME    daily at 08:00, every 2 days at 08:00
    weekly [on] DAYS TIME | every DAYS TIME            weekly on mon, wed at 09:00
    every N weeks [on] DAYS TIME                       every 2 weeks on tue at 10:00
    every ORDINAL WEEKDAY TIME                         every 2nd tuesday at 10:00 (INTERVAL=2)
    monthly [on] [the] [day] 1..31 TIME                monthly on 15 at 14:00
    monthly [on] [the] ORDINAL WEEKDAY TIME            monthly on the 2nd tue at 10:00
    every N months [on] ... (as monthly)               every 2 months on the 14th at 10:00
    [every] ORDINAL WEEKDAY|day of [the] month TIME    2nd tuesday of the month at 10:00
    [every] last day of [the] month TIME               last day of the month at 18:00
    every N minutes | every N hours | hourly           every 30m, every 2 hours
    RRULE:<rule>                                       RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9
  ORDINAL is 1st..4th, first..fourth or last; "every other" is every 2nd. "every 2nd
  tuesday" is every other Tuesday; the 2nd Tuesday of each month needs "of the month", and
  "2nd tuesday" or "every last friday" without it is refused as ambiguous.
  A repeating phrase may end with one of: until YYYY-MM-DD (that whole local day),
  count N, for N times, N times. A raw RRULE may not use SECONDLY or BYSECOND.
  starts_at is the first occurrence at or after now; INTERVAL counts from it.

JSON patterns (a dict, or text holding a JSON object), with "time": "HH:MM" and optional
"until": "YYYY-MM-DD" or "count": N:
    {"type": "daily", "interval": 1}                  interval defaults to 1
    {"type": "weekly", "interval": 1, "days": [0, 2, 4]}   0 is Monday .. 6 Sunday
    {"type": "monthly", "interval": 1, "day": 15}     1..31, or -1 for the last day
    {"type": "custom", "minutes": 120}                time optional: the first occurrence

Every rejected input raises PhraseError, whose text names what was not understood and
shows an example.
"""

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

from scheduling.recurrence import Rule, check_rule_is_practical, resolve_local

MAX_INTERVAL = 1000
MAX_COUNT = 10_000
MAX_CUSTOM_MINUTES = 43_200  # 30 days; longer gaps read better as daily/weekly/monthly
MAX_PHRASE_LENGTH = 500
ECHO_LENGTH = 40

EXAMPLES = '"daily at 08:00", "every 2h", "tomorrow 15:30" or "weekly on mon,wed at 09:00"'
PATTERN_EXAMPLE = '{"type": "weekly", "interval": 1, "days": [0, 2, 4], "time": "08:00"}'
END_EXAMPLE = '"daily at 08:00 until 2025-05-01" or "daily at 08:00 count 10"'
RRULE_EXAMPLE = '"RRULE:FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=9;BYMINUTE=0"'


class PhraseError(ValueError):
    """Says what was not understood and shows an example; str(error) is the full message
    for a human."""


@dataclass(frozen=True)
class ParsedSchedule:
    starts_at: datetime  # aware, UTC: the first occurrence at or after `now`
    rrule: str  # "" for a one-time message, else the rule body without "RRULE:"
    description: str  # a short echo: "daily at 08:00", "once on 2025-04-15 at 14:00"


def parse_schedule(
    phrase: str | dict,
    *,
    zone_name: str,
    now: datetime,
    until: date | None = None,
    count: int | None = None,
    starting: datetime | None = None,
) -> ParsedSchedule:
    """The schedule a phrase or JSON pattern describes, read in the zone `zone_name`.

    `starting`: a repeating schedule begins at this moment at the earliest, and a JSON
    pattern without a "time" takes this moment's local time ({"type": "daily"} with a
    start at 09:00 is daily at 09:00)."""
    try:
        zone = _zone(zone_name)
        start = _checked_now(starting) if starting is not None else None
        clock = _Clock(max(_checked_now(now), start or _checked_now(now)), zone)
        default_time = f"{start.astimezone(zone):%H:%M}" if start else None
        plan, ends = _read(phrase, clock, default_time)
        return _schedule(plan, [*ends, *_keyword_ends(until, count)], clock)
    except _NotUnderstood as problem:
        raise PhraseError(_message(phrase, problem.problem, problem.example)) from None
    except (ValueError, TypeError, OverflowError, KeyError, IndexError, RecursionError) as exc:
        # The last guard, so callers only ever see PhraseError: dates pushed past year
        # 9999, or dateutil refusing something the checks above let through.
        raise PhraseError(_message(phrase, str(exc) or type(exc).__name__, None)) from exc


# -- Plumbing: problems, the clock, what a phrase turns into -------------------------------


class _NotUnderstood(Exception):
    """Raised while reading; parse_schedule adds the echo of the input and an example."""

    def __init__(self, problem: str, example: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.example = example


def _message(phrase: object, problem: str, example: str | None) -> str:
    problem = problem.rstrip(".")
    if isinstance(phrase, dict) or (isinstance(phrase, str) and phrase.lstrip()[:1] == "{"):
        return f"Could not use the pattern {_clip(phrase)}: {problem}. For example: " + (
            example or PATTERN_EXAMPLE
        )
    return f'Could not understand "{_clip(phrase)}": {problem}. Try {example or EXAMPLES}.'


def _clip(value: object) -> str:
    """Input echoed in a message: one line, at most ECHO_LENGTH characters."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= ECHO_LENGTH else text[: ECHO_LENGTH - 3] + "..."


def _quote(value: object) -> str:
    return f'"{_clip(value)}"'


def _checked_now(now: object) -> datetime:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise _NotUnderstood("now must be an aware datetime", "datetime.now(UTC)")
    # In UTC, so "+ 48 hours" is elapsed time: arithmetic on a datetime in a DST zone
    # would move its wall clock instead.
    return now.astimezone(UTC)


def _zone(name: object) -> ZoneInfo:
    try:
        if isinstance(name, str) and name:
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise _NotUnderstood(f"unknown time zone {_quote(name)}", '"Europe/Berlin" or "UTC"')


def _next_minute(moment: datetime) -> datetime:
    """Rounded up to a whole minute: schedules start on the minute, never before now."""
    if moment.second or moment.microsecond:
        return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return moment


@dataclass(frozen=True)
class _Clock:
    now: datetime  # aware, UTC
    zone: ZoneInfo

    @property
    def local(self) -> datetime:
        """Now as the naive local wall-clock time."""
        return self.now.astimezone(self.zone).replace(tzinfo=None)

    def to_utc(self, wall: datetime) -> datetime:
        # The engine's DST policy: a time in a gap is the end of the gap, an ambiguous
        # time its first occurrence.
        return resolve_local(wall, self.zone)


@dataclass(frozen=True)
class _Once:
    starts_at: datetime  # aware, UTC


@dataclass(frozen=True)
class _Rule:
    body: str  # without its end (UNTIL/COUNT), unless a raw RRULE carried one
    description: str
    first_time: time | None = None  # the first occurrence is the next one at this time


@dataclass(frozen=True)
class _End:
    label: str  # as given, for messages: "until 2025-05-01", "count=3"
    until: date | None = None
    count: int | None = None


_Plan = _Once | _Rule


# -- Words -----------------------------------------------------------------------------------

_WEEKDAY_NAMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WEEKDAYS = {name: day for day, name in enumerate(_WEEKDAY_NAMES)} | {
    name[:3]: day for day, name in enumerate(_WEEKDAY_NAMES)
}
_DAY_GROUPS = {
    "weekday": range(5),
    "weekdays": range(5),
    "weekend": range(5, 7),
    "weekends": range(5, 7),
}
_BYDAY = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
_ORDINALS = {"1st": 1, "first": 1, "2nd": 2, "second": 2, "3rd": 3, "third": 3}
_ORDINALS |= {"4th": 4, "fourth": 4, "last": -1}
_UNITS = dict.fromkeys(["m", "min", "mins", "minute", "minutes"], "minutes")
_UNITS |= dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], "hours")
_UNITS |= dict.fromkeys(["d", "day", "days"], "days")
_UNITS |= dict.fromkeys(["w", "wk", "wks", "week", "weeks"], "weeks")
_UNITS |= dict.fromkeys(["month", "months"], "months")
_SINGLE_UNITS = {"minute": "minutes", "hour": "hours", "day": "days", "week": "weeks"}
_SINGLE_UNITS |= {"month": "months"}

_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUMBER = re.compile(r"[+-]?\d+")
_AMOUNT = re.compile(r"([+-]?\d+)([a-z]*)")
_MONTH_DAY = re.compile(r"(\d{1,3})(?:st|nd|rd|th)?")


class _Tokens:
    """The words of a phrase (a comma is a word too), read from left to right."""

    def __init__(self, text: str) -> None:
        self.words: list[str] = re.findall(r"[^\s,]+|,", text)
        self.position = 0

    def peek(self, ahead: int = 0) -> str | None:
        index = self.position + ahead
        return self.words[index] if index < len(self.words) else None

    def take(self, wanted: str) -> str:
        word = self.peek()
        if word is None:
            after = f" after {_quote(self.words[-1])}" if self.words else ""
            raise _NotUnderstood(f"missing {wanted}{after}")
        self.position += 1
        return word

    def pop(self) -> str:
        """The next word, already known to be there (after a peek)."""
        self.position += 1
        return self.words[self.position - 1]

    def skip(self, *optional: str) -> bool:
        """Takes the next word if it is one of these (filler like "at", "on", "the")."""
        if self.peek() in optional:
            self.position += 1
            return True
        return False

    def expect(self, word: str) -> None:
        got = self.take(f'"{word}"')
        if got != word:
            raise _NotUnderstood(f'expected "{word}", got {_quote(got)}')


def _bounded(text: str, low: int, high: int, what: str) -> int:
    """A number written in the phrase; `what` names it in the message."""
    value = int(text) if _NUMBER.fullmatch(text) and len(text) <= 7 else None
    if value is None or not low <= value <= high:
        raise _NotUnderstood(f"{what} must be from {low} to {high}")
    return value


def _parse_time(word: str, *, seconds: bool) -> time:
    match = _TIME.fullmatch(word)
    if not match:
        raise _NotUnderstood(f"expected a time of day like 08:00, got {_quote(word)}")
    hour, minute, second = (int(part or 0) for part in match.groups())
    for value, name, top in ((hour, "hour", 23), (minute, "minute", 59), (second, "second", 59)):
        if value > top:
            raise _NotUnderstood(f"the {name} in {_quote(word)} is out of range (0-{top})")
    if second and not seconds:
        raise _NotUnderstood(f"a repeating schedule cannot have seconds ({_quote(word)})")
    return time(hour, minute, second)


def _time_of_day(tokens: _Tokens, *, seconds: bool = False) -> time:
    tokens.skip("at")
    return _parse_time(tokens.take("a time of day like 08:00"), seconds=seconds)


def _parse_date(word: str) -> date:
    match = _DATE.fullmatch(word)
    if not match:
        raise _NotUnderstood(f"expected a date like 2025-05-01, got {_quote(word)}")
    year, month, day = (int(part) for part in match.groups())
    if not 1900 <= year <= 9999:
        raise _NotUnderstood(f"the year in {_quote(word)} is out of range (1900-9999)")
    try:
        return date(year, month, day)
    except ValueError:
        raise _NotUnderstood(f"there is no date {_quote(word)}") from None


def _amount(tokens: _Tokens, allowed: Iterable[str]) -> tuple[int, str]:
    """A count of units written "30m", "30 min" or "30 minutes": (30, "minutes")."""
    word = tokens.take("a number like 30 minutes")
    match = _AMOUNT.fullmatch(word)
    if not match:
        raise _NotUnderstood(f"expected a number like 30 minutes, got {_quote(word)}")
    number, unit_word = match.groups()
    shown = word if unit_word else f"{word} {tokens.peek() or ''}".strip()
    unit_word = unit_word or tokens.take("a unit like minutes, hours or days")
    unit = _UNITS.get(unit_word)
    if unit not in allowed:
        raise _NotUnderstood(f"unknown unit {_quote(unit_word)}; use {', '.join(allowed)}")
    return _bounded(number, 1, MAX_INTERVAL, f"the number of {unit} in {_quote(shown)}"), unit


def _weekday_list(tokens: _Tokens) -> list[int]:
    """DAYS: "mon,wed,fri", "mon, wed and fri", "weekdays"; sorted, each once."""
    days: set[int] = set()
    while True:
        word = tokens.take("a day of the week like mon")
        if word in _WEEKDAYS:
            days.add(_WEEKDAYS[word])
        elif word in _DAY_GROUPS:
            days.update(_DAY_GROUPS[word])
        else:
            raise _NotUnderstood(f"unknown day {_quote(word)}")
        if not tokens.skip(",", "and") and not _is_day(tokens.peek()):
            return sorted(days)


def _is_day(word: str | None) -> bool:
    return word in _WEEKDAYS or word in _DAY_GROUPS


# -- Rules, built from values (shared by phrases and JSON patterns) --------------------------


def _every_text(unit: str, interval: int) -> str:
    single = {"minutes": "every minute", "hours": "hourly", "days": "daily"}
    single |= {"weeks": "weekly", "months": "monthly"}
    return single[unit] if interval == 1 else f"every {interval} {unit}"


def _body(freq: str, interval: int, *parts: str) -> str:
    return ";".join([f"FREQ={freq}", *([f"INTERVAL={interval}"] if interval != 1 else []), *parts])


def _at(at: time) -> tuple[str, str]:
    # Explicit BYHOUR/BYMINUTE, so the time never depends on when the rule was anchored.
    return f"BYHOUR={at.hour}", f"BYMINUTE={at.minute}"


def _short_rule(unit: str, interval: int) -> _Rule:
    """Every N minutes or hours: no time of day, the first occurrence is now."""
    freq = "MINUTELY" if unit == "minutes" else "HOURLY"
    return _Rule(_body(freq, interval), _every_text(unit, interval))


def _daily_rule(interval: int, at: time) -> _Rule:
    return _Rule(
        _body("DAILY", interval, *_at(at)), f"{_every_text('days', interval)} at {at:%H:%M}"
    )


def _weekly_rule(interval: int, days: list[int], at: time) -> _Rule:
    byday = ",".join(_BYDAY[day] for day in days)
    names = ", ".join(_WEEKDAY_NAMES[day][:3].title() for day in days)
    text = f"{_every_text('weeks', interval)} on {names} at {at:%H:%M}"
    return _Rule(_body("WEEKLY", interval, f"BYDAY={byday}", *_at(at)), text)


def _monthly_rule(interval: int, on: tuple[str, str], at: time) -> _Rule:
    """`on` is a rule part and its words, from _month_day_part or _nth_weekday_part."""
    part, words = on
    text = f"{_every_text('months', interval)} on {words} at {at:%H:%M}"
    return _Rule(_body("MONTHLY", interval, part, *_at(at)), text)


def _month_day_part(day: int) -> tuple[str, str]:
    # Day 29-31 stays as written: the engine sends it on the last day of shorter months.
    return f"BYMONTHDAY={day}", "the last day" if day == -1 else f"day {day}"


def _nth_weekday_part(nth: int, weekday: int) -> tuple[str, str]:
    ordinal = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", -1: "last"}[nth]
    return (
        f"BYDAY={nth:+d}{_BYDAY[weekday]}",
        f"the {ordinal} {_WEEKDAY_NAMES[weekday][:3].title()}",
    )


# -- One-time phrases ----------------------------------------------------------------------

_Form = Callable[[str, _Tokens, _Clock], _Plan]


def _once_at(wall: datetime, clock: _Clock) -> _Once:
    starts_at = clock.to_utc(wall)
    if starts_at < clock.now:
        raise _NotUnderstood(
            f"{wall:%Y-%m-%d %H:%M} is in the past (it is {clock.local:%Y-%m-%d %H:%M}"
            f" in {clock.zone.key})",
            '"tomorrow 10:00" or "in 2 hours"',
        )
    return _Once(starts_at)


def _on_date(word: str, tokens: _Tokens, clock: _Clock) -> _Once:
    """2025-04-15 14:00, 2025-04-15 at 14:00, 2025-04-15T14:00:00."""
    day_text, has_time, time_text = word.partition("t")
    at = _parse_time(time_text, seconds=True) if has_time else _time_of_day(tokens, seconds=True)
    return _once_at(datetime.combine(_parse_date(day_text), at), clock)


def _on_day(word: str, tokens: _Tokens, clock: _Clock) -> _Once:
    """today 10:00, tomorrow at 15:30."""
    day = clock.local.date() + timedelta(days=1 if word == "tomorrow" else 0)
    return _once_at(datetime.combine(day, _time_of_day(tokens, seconds=True)), clock)


def _on_weekday(word: str, tokens: _Tokens, clock: _Clock) -> _Once:
    """monday 09:00: the next Monday strictly after today (a week ahead on a Monday)."""
    today = clock.local.date()
    ahead = (_WEEKDAYS[word] - today.weekday() - 1) % 7 + 1
    at = _time_of_day(tokens, seconds=True)
    return _once_at(datetime.combine(today + timedelta(days=ahead), at), clock)


def _in(word: str, tokens: _Tokens, clock: _Clock) -> _Once:
    """in 30 minutes / in 2h: elapsed time; in 3 days: the same wall-clock time 3 days on."""
    amount, unit = _amount(tokens, ("minutes", "hours", "days", "weeks"))
    if unit in ("minutes", "hours"):
        return _Once(_next_minute(clock.now + timedelta(**{unit: amount})))
    days = amount * 7 if unit == "weeks" else amount
    return _once_at(_next_minute(clock.local) + timedelta(days=days), clock)


# -- Repeating phrases ---------------------------------------------------------------------


def _repeat(unit: str, interval: int, tokens: _Tokens) -> _Rule:
    """What follows "every N <unit>" (or daily/weekly/monthly/hourly, where N is 1)."""
    if unit in ("minutes", "hours"):
        return _short_rule(unit, interval)
    if unit == "days":
        return _daily_rule(interval, _time_of_day(tokens))
    if unit == "weeks":
        tokens.skip("on")
        return _weekly_rule(interval, _weekday_list(tokens), _time_of_day(tokens))
    return _monthly_rule(interval, _month_on(tokens), _time_of_day(tokens))


def _month_on(tokens: _Tokens) -> tuple[str, str]:
    """After "monthly": [on] [the] 15 | 15th | day 15 | 2nd tuesday | last friday | last day."""
    tokens.skip("on")
    tokens.skip("the")
    word, following = tokens.peek(), tokens.peek(1)
    if word in _ORDINALS and following in _WEEKDAYS:
        tokens.pop(), tokens.pop()
        return _nth_weekday_part(_ORDINALS[word], _WEEKDAYS[following])
    if word == "last" and following == "day":
        tokens.pop(), tokens.pop()
        return _month_day_part(-1)
    tokens.skip("day")
    day_word = tokens.take("a day of the month like 15")
    match = _MONTH_DAY.fullmatch(day_word)
    if not match:
        raise _NotUnderstood(f"expected a day of the month like 15, got {_quote(day_word)}")
    return _month_day_part(_bounded(match[1], 1, 31, f"the day of the month {_quote(day_word)}"))


def _of_the_month(word: str, tokens: _Tokens, clock: _Clock) -> _Rule:
    """2nd tuesday of the month / last day of month, after an ORDINAL `word`."""
    what = tokens.take('a day of the week or "day"')
    if tokens.peek() != "of":  # "2nd tuesday" alone could mean either; never guess
        raise _NotUnderstood(
            f'{_quote(f"{word} {what}")} needs "of the month"',
            '"2nd tuesday of the month at 10:00", or "every 2nd tuesday at 10:00"'
            " for every other Tuesday",
        )
    tokens.pop()
    tokens.skip("the", "each", "every")
    tokens.expect("month")
    if what == "day":
        on = _month_day_part(_ORDINALS[word])
    elif what in _WEEKDAYS:
        on = _nth_weekday_part(_ORDINALS[word], _WEEKDAYS[what])
    else:
        raise _NotUnderstood(f"unknown day {_quote(what)}")
    return _monthly_rule(1, on, _time_of_day(tokens))


def _every(word: str, tokens: _Tokens, clock: _Clock) -> _Rule:
    """every day | every 30m | every 2 hours | every mon, wed | every 2nd tuesday | ..."""
    following = tokens.peek()
    if following in _ORDINALS:
        return _every_ordinal(tokens.pop(), tokens, clock)
    if following == "other":  # every other day / week / tuesday: every 2nd
        tokens.pop()
        return _every_nth(2, tokens)
    if _is_day(following):
        return _weekly_rule(1, _weekday_list(tokens), _time_of_day(tokens))
    if following in _SINGLE_UNITS:
        return _repeat(_SINGLE_UNITS[tokens.pop()], 1, tokens)
    amount, unit = _amount(tokens, ("minutes", "hours", "days", "weeks", "months"))
    return _repeat(unit, amount, tokens)


def _every_ordinal(word: str, tokens: _Tokens, clock: _Clock) -> _Rule:
    """every 2nd tuesday (every other Tuesday) vs every 2nd tuesday of the month."""
    if tokens.peek(1) == "of":
        return _of_the_month(word, tokens, clock)
    if word == "last":
        raise _NotUnderstood(
            '"every last" needs "of the month"', '"last friday of the month at 10:00"'
        )
    return _every_nth(_ORDINALS[word], tokens)


def _every_nth(nth: int, tokens: _Tokens) -> _Rule:
    """every 2nd/other tuesday: weekly, INTERVAL=2; every 2nd/other day|week|month."""
    what = tokens.take('a day of the week, "day", "week" or "month"')
    if what in _WEEKDAYS:
        return _weekly_rule(nth, [_WEEKDAYS[what]], _time_of_day(tokens))
    if what in ("day", "week", "month"):
        return _repeat(_SINGLE_UNITS[what], nth, tokens)
    raise _NotUnderstood(f"unknown day {_quote(what)}")


def _keyword(unit: str) -> _Form:
    """daily / weekly / monthly / hourly: "every 1 <unit>"."""
    return lambda word, tokens, clock: _repeat(unit, 1, tokens)


# What the first word of a phrase chooses, and the example shown when the rest is wrong.
_FORMS: dict[str, tuple[_Form, str]] = {
    "today": (_on_day, '"today 10:00" or "tomorrow at 15:30"'),
    "tomorrow": (_on_day, '"tomorrow 15:30" or "tomorrow at 9:00"'),
    "in": (_in, '"in 30 minutes", "in 2h" or "in 3 days"'),
    "daily": (_keyword("days"), '"daily at 08:00" or "every 2 days at 08:00"'),
    "hourly": (_keyword("hours"), '"hourly" or "every 2h"'),
    "weekly": (_keyword("weeks"), '"weekly on mon,wed at 09:00"'),
    "monthly": (
        _keyword("months"),
        '"monthly on 15 at 14:00" or "monthly on the 2nd tue at 10:00"',
    ),
    "every": (
        _every,
        '"every day at 08:00", "every 30m", "every 2 days at 08:00" or "every 2nd tue at 10:00"',
    ),
}
_FORMS |= dict.fromkeys(_WEEKDAYS, (_on_weekday, '"monday 09:00" or "weekly on monday at 09:00"'))
_FORMS |= dict.fromkeys(
    _ORDINALS,
    (_of_the_month, '"2nd tuesday of the month at 10:00" or "last day of month at 18:00"'),
)
_DATE_FORM = (_on_date, '"2025-04-15 14:00" or "2025-04-15T14:00"')


def _read_phrase(text: str, clock: _Clock) -> tuple[_Plan, list[_End]]:
    tokens = _Tokens(text.lower())
    word = tokens.pop()  # the text is not empty
    form, example = _DATE_FORM if _DATE.match(word) else _FORMS.get(word, (None, None))
    if form is None:
        raise _NotUnderstood(f"unknown word {_quote(word)}")
    try:
        return form(word, tokens, clock), _read_ends(tokens)
    except _NotUnderstood as problem:
        raise _NotUnderstood(problem.problem, problem.example or example) from None


def _read_ends(tokens: _Tokens) -> list[_End]:
    """Whatever follows the schedule must be ends; anything else is an error, not ignored."""
    ends = []
    while tokens.peek() is not None:
        ends.append(_read_end(tokens))
    return ends


def _read_end(tokens: _Tokens) -> _End:
    """until 2025-05-01 | count 10 | for 10 times | 10 times."""
    start, word = tokens.position, tokens.pop()
    if word == "until":
        day_text = tokens.take("a date like 2025-05-01")
        try:
            return _End(f"until {day_text}", until=_parse_date(day_text))
        except _NotUnderstood as problem:
            raise _NotUnderstood(problem.problem, END_EXAMPLE) from None
    if word in ("count", "for"):
        number = tokens.take("a number")
        if word == "for":
            tokens.expect("times")
    elif _NUMBER.fullmatch(word) and tokens.skip("times", "time"):
        number = word
    else:
        raise _NotUnderstood(f"unexpected {_quote(word)}")
    label = " ".join(tokens.words[start : tokens.position])
    return _End(label, count=_bounded(number, 1, MAX_COUNT, f"the count in {_quote(label)}"))


# -- A raw RRULE ---------------------------------------------------------------------------

_RAW_FREQS = {"MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
_RAW_PART = re.compile(r"([A-Z]+)=([^;=\s]+)")
_RAW_UNTIL = re.compile(r"\d{8}(T\d{6}Z?)?")
_UNTIL_UTC = re.compile(r"UNTIL=(\d{8}T\d{6})Z")
_RAW_RANGES = {"BYHOUR": (0, 23), "BYMINUTE": (0, 59), "BYMONTH": (1, 12)}
_RAW_RANGES |= {"BYMONTHDAY": (1, 31), "BYYEARDAY": (1, 366), "BYWEEKNO": (1, 53)}
_SIGNED = {"BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"}
_MONTH_LENGTHS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _read_raw_rule(text: str) -> _Rule:
    """RRULE:FREQ=...: checked here for what dateutil accepts but the scheduler must not
    (SECONDLY, BYSECOND, INTERVAL=0, rules that never occur); the rest by dateutil later."""
    body = text.strip().upper()
    parts = _raw_parts(body)
    if "FREQ" not in parts:
        raise _NotUnderstood("FREQ is missing")
    if parts["FREQ"] not in _RAW_FREQS:  # SECONDLY too: the shortest step is a minute
        raise _NotUnderstood(
            f"FREQ must be MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY, not"
            f" {_quote(parts['FREQ'])}"
        )
    if "BYSECOND" in parts:
        raise _NotUnderstood("BYSECOND is not supported; the shortest step is a minute")
    if "UNTIL" in parts and "COUNT" in parts:
        raise _NotUnderstood("a rule may have UNTIL or COUNT, not both")
    _bounded(parts.get("INTERVAL", "1"), 1, MAX_INTERVAL, "INTERVAL")
    _bounded(parts.get("COUNT", "1"), 1, MAX_COUNT, "COUNT")
    if "UNTIL" in parts and not _RAW_UNTIL.fullmatch(parts["UNTIL"]):
        raise _NotUnderstood(f"UNTIL {_quote(parts['UNTIL'])} is not like 20250501T235959")
    _check_ranges(parts)
    _check_month_days(parts)
    return _Rule(body, f"rule {body}")


def _raw_parts(body: str) -> dict[str, str]:
    if not body:
        raise _NotUnderstood('nothing after "RRULE:"')
    parts: dict[str, str] = {}
    for part in body.split(";"):
        match = _RAW_PART.fullmatch(part)
        if not match:
            raise _NotUnderstood(f"{_quote(part)} is not a NAME=VALUE part")
        if match[1] in parts:
            raise _NotUnderstood(f"{match[1]} is given twice")
        parts[match[1]] = match[2]
    return parts


def _check_ranges(parts: dict[str, str]) -> None:
    """Values dateutil would accept and then search to year 9999 for (BYMONTH=13), or
    fail on obscurely (BYHOUR=30 in an HOURLY rule)."""
    for name, (low, high) in _RAW_RANGES.items():
        for value in parts.get(name, str(low)).split(","):
            # -1 is the last day (week, ...) for these; the sign is not part of the range.
            number = value[1:] if name in _SIGNED and value[:1] in "+-" else value
            _bounded(number, low, high, f"{name} {_quote(value)}")


def _check_month_days(parts: dict[str, str]) -> None:
    """BYMONTH=2;BYMONTHDAY=30 never occurs, and dateutil would search to year 9999 to
    find that out (seconds of CPU); refuse it up front."""
    if "BYMONTHDAY" not in parts:
        return
    # _check_ranges has made sure these are numbers in range.
    days = [int(day) for day in parts["BYMONTHDAY"].split(",")]
    months = [int(month) for month in parts.get("BYMONTH", "").split(",") if month]
    if not any(
        abs(day) <= _MONTH_LENGTHS[month - 1] for month in months or range(1, 13) for day in days
    ):
        raise _NotUnderstood("BYMONTH and BYMONTHDAY never meet: no such day in those months")


# -- JSON patterns -------------------------------------------------------------------------

_COMMON_KEYS = {"type", "time", "until", "count"}
_MISSING = object()


def _read_pattern(data: dict, default_time: str | None = None) -> tuple[_Rule, list[_End]]:
    if default_time is not None and "time" not in data:
        data = {**data, "time": default_time}
    for key in data:
        if not isinstance(key, str):
            raise _NotUnderstood(f"key {_quote(key)} is not text")
    if "type" not in data:
        raise _NotUnderstood('key "type" is missing')
    kind = data["type"]
    if not isinstance(kind, str) or kind not in _PATTERNS:
        raise _NotUnderstood(
            f'key "type" must be daily, weekly, monthly or custom, not {_quote(kind)}'
        )
    keys, build = _PATTERNS[kind]
    unknown = sorted(set(data) - keys - _COMMON_KEYS)
    if unknown:
        raise _NotUnderstood(f"unknown key {_quote(unknown[0])} for type {kind}")
    return build(data), _pattern_ends(data)


def _int_key(data: dict, key: str, low: int, high: int, default: Any = _MISSING) -> int:
    value = data.get(key, default)
    if value is _MISSING:
        raise _NotUnderstood(f"key {_quote(key)} is missing")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _NotUnderstood(
            f"key {_quote(key)} must be a whole number from {low} to {high}, not {_quote(value)}"
        )
    return value


def _time_key(data: dict, *, required: bool = True) -> time | None:
    if "time" not in data and not required:
        return None
    value = data.get("time", _MISSING)
    if value is _MISSING:
        raise _NotUnderstood('key "time" is missing')
    if not isinstance(value, str):
        raise _NotUnderstood(f'key "time" must be text like "08:00", not {_quote(value)}')
    try:
        return _parse_time(value.strip(), seconds=False)
    except _NotUnderstood as problem:
        raise _NotUnderstood(f'key "time": {problem.problem}') from None


def _days_key(data: dict) -> list[int]:
    days = data.get("days", _MISSING)
    if days is _MISSING:
        raise _NotUnderstood('key "days" is missing')
    valid = (
        isinstance(days, list)
        and days
        and all(
            isinstance(day, int) and not isinstance(day, bool) and 0 <= day <= 6 for day in days
        )
    )
    if not valid:
        raise _NotUnderstood(
            f'key "days" must be a list of 0 (Monday) to 6 (Sunday), not {_quote(days)}'
        )
    return sorted(set(days))


def _month_day_key(data: dict) -> int:
    day = _int_key(data, "day", -1, 31)
    if day == 0:
        raise _NotUnderstood('key "day" must be 1 to 31, or -1 for the last day, not 0')
    return day


def _interval(data: dict) -> int:
    return _int_key(data, "interval", 1, MAX_INTERVAL, default=1)


def _custom_pattern(data: dict) -> _Rule:
    minutes = _int_key(data, "minutes", 1, MAX_CUSTOM_MINUTES)
    at = _time_key(data, required=False)
    text = f"every {minutes} minutes" + (f" from {at:%H:%M}" if at else "")
    return _Rule(_body("MINUTELY", minutes), text, first_time=at)


_PATTERNS: dict[str, tuple[set[str], Callable[[dict], _Rule]]] = {
    "daily": ({"interval"}, lambda data: _daily_rule(_interval(data), _time_key(data))),
    "weekly": (
        {"interval", "days"},
        lambda data: _weekly_rule(_interval(data), _days_key(data), _time_key(data)),
    ),
    "monthly": (
        {"interval", "day"},
        lambda data: _monthly_rule(
            _interval(data), _month_day_part(_month_day_key(data)), _time_key(data)
        ),
    ),
    "custom": ({"minutes"}, _custom_pattern),
}


def _pattern_ends(data: dict) -> list[_End]:
    ends = []
    if "until" in data:
        value = data["until"]
        if not isinstance(value, str):
            raise _NotUnderstood(
                f'key "until" must be a date like "2025-05-01", not {_quote(value)}'
            )
        try:
            ends.append(_End(f"until {value}", until=_parse_date(value.strip())))
        except _NotUnderstood as problem:
            raise _NotUnderstood(f'key "until": {problem.problem}') from None
    if "count" in data:
        ends.append(_End(f"count {data['count']}", count=_int_key(data, "count", 1, MAX_COUNT)))
    return ends


def _json_object(text: str) -> dict:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _NotUnderstood(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _NotUnderstood("expected a JSON object")
    return data


# -- Reading and scheduling ----------------------------------------------------------------


def _read(
    phrase: object, clock: _Clock, default_time: str | None = None
) -> tuple[_Plan, list[_End]]:
    """A phrase, a raw RRULE or a JSON pattern, read into a plan and its ends."""
    if isinstance(phrase, dict):
        return _read_pattern(phrase, default_time)
    if not isinstance(phrase, str):
        raise _NotUnderstood(f"expected text or a JSON object, not {type(phrase).__name__}")
    text = " ".join(phrase.split())
    if not text:
        raise _NotUnderstood("the phrase is empty")
    if len(text) > MAX_PHRASE_LENGTH:
        raise _NotUnderstood(f"the phrase is longer than {MAX_PHRASE_LENGTH} characters")
    if text.startswith("{"):
        return _read_pattern(_json_object(text), default_time)
    if text[:6].upper() == "RRULE:":
        try:
            return _read_raw_rule(text[6:]), []
        except _NotUnderstood as problem:
            raise _NotUnderstood(problem.problem, RRULE_EXAMPLE) from None
    return _read_phrase(text, clock)


def _keyword_ends(until: object, count: object) -> list[_End]:
    ends = []
    if until is not None:
        if isinstance(until, datetime) or not isinstance(until, date):
            raise _NotUnderstood(f"until must be a date, not {type(until).__name__}", END_EXAMPLE)
        ends.append(_End(f"until={until.isoformat()}", until=until))
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise _NotUnderstood(f"count must be from 1 to {MAX_COUNT}, not {_quote(count)}")
        ends.append(_End(f"count={count}", count=count))
    return ends


def _schedule(plan: _Plan, ends: list[_End], clock: _Clock) -> ParsedSchedule:
    if len(ends) > 1:
        labels = " and ".join(_quote(end.label) for end in ends)
        raise _NotUnderstood(f"give one end, not {labels}", END_EXAMPLE)
    end = ends[0] if ends else None
    if isinstance(plan, _Rule):
        return _schedule_rule(plan, end, clock)
    if end is not None:
        raise _NotUnderstood(f"{_quote(end.label)} is only for repeating schedules", END_EXAMPLE)
    wall = plan.starts_at.astimezone(clock.zone)
    at = f"{wall:%H:%M:%S}" if wall.second else f"{wall:%H:%M}"
    return ParsedSchedule(plan.starts_at, "", f"once on {wall:%Y-%m-%d} at {at}")


def _schedule_rule(plan: _Rule, end: _End | None, clock: _Clock) -> ParsedSchedule:
    if end is not None and re.search(r"(^|;)(UNTIL|COUNT)=", plan.body):
        raise _NotUnderstood(f"the rule already has its end; {_quote(end.label)} is a second one")
    body, description = plan.body, plan.description
    if end is not None and end.until is not None:
        body += f";UNTIL={end.until:%Y%m%d}T235959"  # floating local time: the whole day
        description += f" until {end.until.isoformat()}"
    elif end is not None:
        body += f";COUNT={end.count}"
        description += f", {end.count} time" + ("s" if end.count != 1 else "")
    try:
        candidate = _first_candidate(plan, clock)
        # The rule as the engine will read it: anchored at its first occurrence.
        _parse_rrule(body, candidate.astimezone(clock.zone).replace(tzinfo=None), clock.zone)
        engine = Rule(body, starts_at=candidate, zone_name=clock.zone.key)
        first = engine.after(candidate - timedelta(microseconds=1))
    except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
        raise _NotUnderstood(f"not a valid RRULE ({exc})", RRULE_EXAMPLE) from None
    if first is None:
        ending = _quote(end.label) if end is not None else "its UNTIL"
        local = candidate.astimezone(clock.zone)
        raise _NotUnderstood(
            f"{ending} is before the first occurrence on {local:%Y-%m-%d at %H:%M}",
            END_EXAMPLE,
        )
    return ParsedSchedule(first, body, description)


def _parse_rrule(body: str, dtstart: datetime, zone: ZoneInfo) -> rrule:
    # dateutil wants a floating UNTIL beside a naive local start, as the engine also does.
    def to_local(match: re.Match) -> str:
        instant = datetime.strptime(match[1] + "+0000", "%Y%m%dT%H%M%S%z")
        return "UNTIL=" + instant.astimezone(zone).strftime("%Y%m%dT%H%M%S")

    parsed = rrulestr(_UNTIL_UTC.sub(to_local, body), dtstart=dtstart)
    if not isinstance(parsed, rrule):
        raise ValueError("only a single RRULE is accepted")
    return parsed


def _first_candidate(plan: _Rule, clock: _Clock) -> datetime:
    """The first local occurrence at or after now, ignoring INTERVAL and the end.

    So "every 2 days at 08:00" starts tomorrow at 08:00 rather than the day after, and
    the interval counts from there: this occurrence becomes DTSTART, as the engine
    anchors a rule at starts_at. The engine (scheduling.recurrence.Rule) finds it, so
    its DST and month-end policy hold for the first occurrence too: `monthly on 31`
    asked on 14 April starts on 30 April.
    """
    anchor = _anchor(plan, clock)
    try:
        # Before any search: a rule the engine cannot afford to expand is refused here.
        check_rule_is_practical(plan.body, starts_at=clock.to_utc(anchor),
                                zone_name=clock.zone.key)  # fmt: skip
    except (ValueError, TypeError, OverflowError) as exc:
        raise _NotUnderstood(str(exc), RRULE_EXAMPLE) from exc
    ends = {"INTERVAL", "COUNT", "UNTIL"}
    kept = [part for part in plan.body.split(";") if part.split("=")[0].strip().upper() not in ends]
    try:
        search = Rule(";".join(kept), starts_at=clock.to_utc(anchor), zone_name=clock.zone.key)
        first = search.after(clock.now - timedelta(microseconds=1))
    except (ValueError, TypeError, OverflowError) as exc:
        raise _NotUnderstood(f"the rule is not valid ({exc})", RRULE_EXAMPLE) from exc
    if first is None:
        raise _NotUnderstood("the rule has no occurrence from now on", RRULE_EXAMPLE)
    return first


def _anchor(plan: _Rule, clock: _Clock) -> datetime:
    """Where the search starts: now (to the minute), or the next `first_time` from now."""
    start = _next_minute(clock.local)
    if plan.first_time is None:
        return start
    wall = datetime.combine(start.date(), plan.first_time)
    return wall if wall >= start else wall + timedelta(days=1)
