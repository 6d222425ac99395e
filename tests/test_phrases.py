"""Schedule phrases: exact rules and first occurrences, JSON patterns, and errors that say
what was not understood. Plain functions: no database."""

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.phrases import ParsedSchedule, PhraseError, parse_schedule
from scheduling.recurrence import Rule

BERLIN = "Europe/Berlin"
# Monday 2025-04-14 11:00 in Berlin (CEST, UTC+2), 09:00 UTC.
NOW = datetime(2025, 4, 14, 11, 0, tzinfo=ZoneInfo(BERLIN))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def parse(phrase, *, now: datetime = NOW, zone_name: str = BERLIN, **ends) -> ParsedSchedule:
    return parse_schedule(phrase, zone_name=zone_name, now=now, **ends)


def refused(phrase, **kwargs) -> str:
    with pytest.raises(PhraseError) as raised:
        parse(phrase, **kwargs)
    return str(raised.value)


# -- One-time phrases ----------------------------------------------------------------------

ONE_TIME = [
    ("2025-04-15 14:00", utc(2025, 4, 15, 12, 0)),
    ("2025-04-15 at 14:00", utc(2025, 4, 15, 12, 0)),
    ("2025-04-15T14:00", utc(2025, 4, 15, 12, 0)),
    ("2025-04-15T14:00:00", utc(2025, 4, 15, 12, 0)),
    ("2025-04-15T14:00:30", utc(2025, 4, 15, 12, 0, 30)),
    ("today 12:00", utc(2025, 4, 14, 10, 0)),
    ("today 11:00", utc(2025, 4, 14, 9, 0)),  # exactly now is not the past
    ("tomorrow 15:30", utc(2025, 4, 15, 13, 30)),
    ("tomorrow at 15:30", utc(2025, 4, 15, 13, 30)),
    ("tomorrow 9:00", utc(2025, 4, 15, 7, 0)),
    ("monday 09:00", utc(2025, 4, 21, 7, 0)),  # today is Monday: next week's
    ("mon 09:00", utc(2025, 4, 21, 7, 0)),
    ("tuesday at 9:00", utc(2025, 4, 15, 7, 0)),
    ("sun 18:00", utc(2025, 4, 20, 16, 0)),
    ("in 2 hours", utc(2025, 4, 14, 11, 0)),
    ("in 1 hour", utc(2025, 4, 14, 10, 0)),
    ("in 2h", utc(2025, 4, 14, 11, 0)),
    ("in 30 minutes", utc(2025, 4, 14, 9, 30)),
    ("in 45 min", utc(2025, 4, 14, 9, 45)),
    ("in 30m", utc(2025, 4, 14, 9, 30)),
    ("in 3 days", utc(2025, 4, 17, 9, 0)),
    ("  TOMORROW   At 15:30 ", utc(2025, 4, 15, 13, 30)),
]


@pytest.mark.parametrize(("phrase", "starts_at"), ONE_TIME)
def test_a_one_time_phrase_gives_its_instant_in_utc_and_no_rule(phrase, starts_at):
    parsed = parse(phrase)
    assert parsed.rrule == ""
    assert parsed.starts_at == starts_at
    assert parsed.starts_at.tzinfo is UTC


def test_a_one_time_description_shows_the_local_date_and_time():
    assert parse("2025-04-15 14:00").description == "once on 2025-04-15 at 14:00"
    assert parse("in 30 minutes").description == "once on 2025-04-14 at 11:30"


@pytest.mark.parametrize("phrase", ["today 10:00", "2025-04-01 10:00", "2024-12-31T23:59"])
def test_a_one_time_phrase_in_the_past_is_refused_and_says_so(phrase):
    message = refused(phrase)
    assert "is in the past" in message
    assert "Try" in message


def test_today_at_the_current_minute_is_past_once_seconds_have_gone_by():
    assert "in the past" in refused("today 11:00", now=NOW + timedelta(seconds=20))


def test_relative_times_round_up_to_the_next_whole_minute():
    later = NOW + timedelta(seconds=20)
    assert parse("in 30 minutes", now=later).starts_at == utc(2025, 4, 14, 9, 31)


def test_in_days_keeps_the_local_wall_clock_time_across_a_dst_change():
    # Saturday 2025-03-29 11:00 CET; Berlin springs forward that night.
    before_change = datetime(2025, 3, 29, 11, 0, tzinfo=ZoneInfo(BERLIN))
    assert parse("in 2 days", now=before_change).starts_at == utc(2025, 3, 31, 9, 0)
    assert parse("in 48 hours", now=before_change).starts_at == utc(2025, 3, 31, 10, 0)


# -- Repeating phrases ---------------------------------------------------------------------

RECURRING = [
    ("daily 08:00", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0", utc(2025, 4, 15, 6, 0)),
    ("daily at 9:00", "FREQ=DAILY;BYHOUR=9;BYMINUTE=0", utc(2025, 4, 15, 7, 0)),
    ("daily 12:30", "FREQ=DAILY;BYHOUR=12;BYMINUTE=30", utc(2025, 4, 14, 10, 30)),
    ("every day at 08:00", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0", utc(2025, 4, 15, 6, 0)),
    (
        "weekly mon,wed,fri 08:00",
        "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=8;BYMINUTE=0",
        utc(2025, 4, 16, 6, 0),
    ),
    (
        "weekly on monday at 09:00",
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0",
        utc(2025, 4, 21, 7, 0),
    ),
    (
        "weekly on mon, wed at 09:00",
        "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0",
        utc(2025, 4, 16, 7, 0),
    ),
    (
        "every weekday at 08:00",
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=8;BYMINUTE=0",
        utc(2025, 4, 15, 6, 0),
    ),
    ("monthly 1 10:00", "FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=10;BYMINUTE=0", utc(2025, 5, 1, 8, 0)),
    (
        "monthly on 15 at 14:00",
        "FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=14;BYMINUTE=0",
        utc(2025, 4, 15, 12, 0),
    ),
    (
        "monthly on the 15th at 14:00",
        "FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=14;BYMINUTE=0",
        utc(2025, 4, 15, 12, 0),
    ),
    # Day 31 stays 31 (the engine sends it on the last day of shorter months);
    # its first occurrence asked on 14 April is 30 April.
    (
        "monthly on 31 at 10:00",
        "FREQ=MONTHLY;BYMONTHDAY=31;BYHOUR=10;BYMINUTE=0",
        utc(2025, 4, 30, 8, 0),  # the last day of April stands in for the 31st
    ),
    ("every 30m", "FREQ=MINUTELY;INTERVAL=30", utc(2025, 4, 14, 9, 0)),
    ("every 30 minutes", "FREQ=MINUTELY;INTERVAL=30", utc(2025, 4, 14, 9, 0)),
    ("every 2h", "FREQ=HOURLY;INTERVAL=2", utc(2025, 4, 14, 9, 0)),
    ("every 2 hours", "FREQ=HOURLY;INTERVAL=2", utc(2025, 4, 14, 9, 0)),
    ("hourly", "FREQ=HOURLY", utc(2025, 4, 14, 9, 0)),
    (
        "every 2 days at 08:00",
        "FREQ=DAILY;INTERVAL=2;BYHOUR=8;BYMINUTE=0",
        utc(2025, 4, 15, 6, 0),
    ),
    (
        "every 2nd tuesday at 10:00",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYHOUR=10;BYMINUTE=0",
        utc(2025, 4, 15, 8, 0),
    ),
    (
        "every other tuesday at 10:00",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYHOUR=10;BYMINUTE=0",
        utc(2025, 4, 15, 8, 0),
    ),
    (
        "every 2 weeks on mon and thu at 09:00",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;BYHOUR=9;BYMINUTE=0",
        utc(2025, 4, 17, 7, 0),
    ),
    # The 2nd Tuesday of April 2025 (the 8th) has passed: May 13.
    (
        "2nd tuesday of the month at 10:00",
        "FREQ=MONTHLY;BYDAY=+2TU;BYHOUR=10;BYMINUTE=0",
        utc(2025, 5, 13, 8, 0),
    ),
    (
        "every 2nd tuesday of the month at 10:00",
        "FREQ=MONTHLY;BYDAY=+2TU;BYHOUR=10;BYMINUTE=0",
        utc(2025, 5, 13, 8, 0),
    ),
    (
        "1st monday of the month at 09:00",
        "FREQ=MONTHLY;BYDAY=+1MO;BYHOUR=9;BYMINUTE=0",
        utc(2025, 5, 5, 7, 0),
    ),
    (
        "3rd wednesday of month at 09:00",
        "FREQ=MONTHLY;BYDAY=+3WE;BYHOUR=9;BYMINUTE=0",
        utc(2025, 4, 16, 7, 0),
    ),
    (
        "4th friday of the month at 09:00",
        "FREQ=MONTHLY;BYDAY=+4FR;BYHOUR=9;BYMINUTE=0",
        utc(2025, 4, 25, 7, 0),
    ),
    (
        "last friday of the month at 17:00",
        "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0",
        utc(2025, 4, 25, 15, 0),
    ),
    (
        "monthly on the 2nd tue at 10:00",
        "FREQ=MONTHLY;BYDAY=+2TU;BYHOUR=10;BYMINUTE=0",
        utc(2025, 5, 13, 8, 0),
    ),
    (
        "last day of month at 18:00",
        "FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=18;BYMINUTE=0",
        utc(2025, 4, 30, 16, 0),
    ),
    (
        "last day of the month at 18:00",
        "FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=18;BYMINUTE=0",
        utc(2025, 4, 30, 16, 0),
    ),
    (
        "every 2 months on the 14th at 10:00",
        "FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=14;BYHOUR=10;BYMINUTE=0",
        utc(2025, 5, 14, 8, 0),
    ),
    (
        "RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0",
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0",
        utc(2025, 4, 21, 7, 0),
    ),
    (
        "rrule:freq=daily;byhour=18;byminute=30",
        "FREQ=DAILY;BYHOUR=18;BYMINUTE=30",
        utc(2025, 4, 14, 16, 30),
    ),
    ("RRULE:FREQ=DAILY", "FREQ=DAILY", utc(2025, 4, 14, 9, 0)),  # anchored at now
    ("  Daily   AT  08:00  ", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0", utc(2025, 4, 15, 6, 0)),
]


@pytest.mark.parametrize(("phrase", "rule", "starts_at"), RECURRING)
def test_a_repeating_phrase_gives_the_exact_rule_and_its_first_occurrence(phrase, rule, starts_at):
    parsed = parse(phrase)
    assert parsed.rrule == rule
    assert parsed.starts_at == starts_at
    assert parsed.starts_at.tzinfo is UTC


@pytest.mark.parametrize(("phrase", "rule", "starts_at"), RECURRING)
def test_the_rule_anchored_at_starts_at_repeats_starts_at_as_its_first_occurrence(
    phrase, rule, starts_at
):
    """The engine, anchored at starts_at, sends its first occurrence at starts_at."""
    engine = Rule(rule, starts_at=starts_at, zone_name=BERLIN)
    assert engine.after(starts_at - timedelta(microseconds=1)) == starts_at


def test_every_2nd_tuesday_is_every_other_tuesday_not_the_2nd_of_the_month():
    every_other = parse("every 2nd tuesday at 10:00")
    of_the_month = parse("2nd tuesday of the month at 10:00")
    assert "INTERVAL=2;BYDAY=TU" in every_other.rrule
    assert every_other.description == "every 2 weeks on Tue at 10:00"
    assert "FREQ=MONTHLY;BYDAY=+2TU" in of_the_month.rrule
    assert of_the_month.description == "monthly on the 2nd Tue at 10:00"


def test_short_intervals_start_at_the_next_whole_minute_without_a_time_of_day():
    parsed = parse("every 30m", now=NOW + timedelta(seconds=20))
    assert parsed.starts_at == utc(2025, 4, 14, 9, 1)
    assert "BYHOUR" not in parsed.rrule and "BYMINUTE" not in parsed.rrule


def test_a_raw_rule_without_a_time_of_day_is_anchored_at_the_next_whole_minute():
    parsed = parse("RRULE:FREQ=DAILY", now=NOW + timedelta(seconds=1))
    assert parsed.starts_at == utc(2025, 4, 14, 9, 1)


def test_the_time_of_day_is_read_in_the_patients_zone():
    parsed = parse("daily 08:00", zone_name="America/New_York")  # 05:00 there now
    assert parsed.starts_at == utc(2025, 4, 14, 12, 0)


def test_the_first_daily_occurrence_after_a_dst_change_keeps_its_local_time():
    before_change = datetime(2025, 3, 29, 12, 0, tzinfo=ZoneInfo(BERLIN))
    assert parse("daily 08:00", now=before_change).starts_at == utc(2025, 3, 30, 6, 0)


def test_no_rule_ever_carries_bysecond():
    for phrase, _, _ in RECURRING:
        assert "BYSECOND" not in parse(phrase).rrule


@pytest.mark.parametrize(
    ("phrase", "description"),
    [
        ("daily 08:00", "daily at 08:00"),
        ("weekly mon,wed,fri 08:00", "weekly on Mon, Wed, Fri at 08:00"),
        ("monthly on 15 at 14:00", "monthly on day 15 at 14:00"),
        ("last day of month at 18:00", "monthly on the last day at 18:00"),
        ("every 30m", "every 30 minutes"),
        ("every 2 hours", "every 2 hours"),
        ("daily 08:00 until 2025-05-01", "daily at 08:00 until 2025-05-01"),
        ("daily 08:00 count 10", "daily at 08:00, 10 times"),
    ],
)
def test_the_description_echoes_the_schedule_briefly(phrase, description):
    assert parse(phrase).description == description


# -- Ends ----------------------------------------------------------------------------------

ENDS = [
    ("daily 08:00 until 2025-05-01", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;UNTIL=20250501T235959"),
    ("daily 08:00 count 10", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;COUNT=10"),
    ("daily 08:00 for 10 times", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;COUNT=10"),
    ("daily 08:00 10 times", "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;COUNT=10"),
    ("every 2h count 3", "FREQ=HOURLY;INTERVAL=2;COUNT=3"),
    (
        "weekly on mon at 09:00 until 2025-06-30",
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;UNTIL=20250630T235959",
    ),
]


@pytest.mark.parametrize(("phrase", "rule"), ENDS)
def test_an_end_in_the_phrase_becomes_until_or_count(phrase, rule):
    assert parse(phrase).rrule == rule


def test_until_is_inclusive_of_the_whole_local_day():
    # Today 08:00 has passed; an until of tomorrow still allows tomorrow at 08:00.
    parsed = parse("daily 08:00 until 2025-04-15")
    assert parsed.starts_at == utc(2025, 4, 15, 6, 0)
    assert parsed.rrule.endswith(";UNTIL=20250415T235959")


def test_keyword_until_and_count_end_the_rule_like_the_phrase_does():
    assert parse("daily 08:00", until=date(2025, 5, 1)).rrule == ENDS[0][1]
    assert parse("daily 08:00", count=10).rrule == ENDS[1][1]


@pytest.mark.parametrize(
    ("phrase", "ends"),
    [
        ("daily 08:00", {"until": date(2025, 5, 1), "count": 3}),
        ("daily 08:00 count 3 until 2025-05-01", {}),
        ("daily 08:00 until 2025-05-01", {"count": 3}),
        ("daily 08:00 count 3", {"count": 3}),
    ],
)
def test_two_ends_are_refused(phrase, ends):
    message = refused(phrase, **ends)
    assert "give one end" in message
    assert "Try" in message


@pytest.mark.parametrize(
    ("phrase", "ends"),
    [
        ("tomorrow 10:00 count 3", {}),
        ("2025-04-15 14:00 until 2025-05-01", {}),
        ("in 2 hours", {"count": 3}),
        ("tomorrow 10:00", {"until": date(2025, 5, 1)}),
    ],
)
def test_an_end_on_a_one_time_phrase_is_refused(phrase, ends):
    assert "only for repeating schedules" in refused(phrase, **ends)


def test_an_until_before_the_first_occurrence_is_refused():
    message = refused("daily 08:00", until=date(2025, 4, 14))  # today's 08:00 has passed
    assert "is before the first occurrence on 2025-04-15 at 08:00" in message


def test_a_raw_rule_with_its_own_end_takes_no_second_one():
    assert "already has its end" in refused("RRULE:FREQ=DAILY;COUNT=3", count=2)


# -- JSON patterns -------------------------------------------------------------------------

PATTERNS = [
    ({"type": "daily", "interval": 1, "time": "08:00"}, "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"),
    ({"type": "daily", "time": "08:00"}, "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"),
    (
        {"type": "daily", "interval": 2, "time": "08:00"},
        "FREQ=DAILY;INTERVAL=2;BYHOUR=8;BYMINUTE=0",
    ),
    (
        {"type": "weekly", "interval": 1, "days": [0, 2, 4], "time": "08:00"},
        "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=8;BYMINUTE=0",
    ),
    (
        {"type": "weekly", "interval": 2, "days": [6, 1], "time": "08:00"},
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;BYHOUR=8;BYMINUTE=0",
    ),
    (
        {"type": "monthly", "interval": 1, "day": 15, "time": "14:00"},
        "FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=14;BYMINUTE=0",
    ),
    (
        {"type": "monthly", "day": -1, "time": "18:00"},
        "FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=18;BYMINUTE=0",
    ),
    ({"type": "custom", "minutes": 120}, "FREQ=MINUTELY;INTERVAL=120"),
    (
        {"type": "daily", "time": "08:00", "until": "2025-05-01"},
        "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;UNTIL=20250501T235959",
    ),
    ({"type": "daily", "time": "08:00", "count": 5}, "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;COUNT=5"),
    ({"type": "custom", "minutes": 30, "count": 4}, "FREQ=MINUTELY;INTERVAL=30;COUNT=4"),
]


@pytest.mark.parametrize(("pattern", "rule"), PATTERNS)
def test_a_json_pattern_as_a_dict_gives_the_exact_rule(pattern, rule):
    assert parse(pattern).rrule == rule


@pytest.mark.parametrize(("pattern", "rule"), PATTERNS)
def test_a_json_pattern_as_text_reads_like_the_dict(pattern, rule):
    assert parse(json.dumps(pattern)) == parse(pattern)


def test_json_patterns_start_at_their_first_occurrence():
    assert parse(PATTERNS[3][0]).starts_at == utc(2025, 4, 16, 6, 0)
    assert parse(PATTERNS[5][0]).starts_at == utc(2025, 4, 15, 12, 0)
    assert parse(PATTERNS[6][0]).starts_at == utc(2025, 4, 30, 16, 0)


@pytest.mark.parametrize(
    ("pattern", "rule", "first"),
    [
        ({"type": "daily"}, "FREQ=DAILY;BYHOUR=9;BYMINUTE=30", utc(2025, 4, 20, 7, 30)),
        ({"type": "weekly", "days": [0, 2, 4]}, "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9;BYMINUTE=30",
         utc(2025, 4, 21, 7, 30)),
        ({"type": "monthly", "day": 15}, "FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=9;BYMINUTE=30",
         utc(2025, 5, 15, 7, 30)),
    ],
)  # fmt: skip
def test_a_pattern_without_a_time_takes_the_start_s_local_time(pattern, rule, first):
    # As care teams write it: {"scheduled_time": "2025-04-20T09:30:00+02:00",
    # "recurrence": {"type": "daily"}}; the start is a Sunday.
    start = datetime(2025, 4, 20, 9, 30, tzinfo=ZoneInfo(BERLIN))
    parsed = parse(pattern, starting=start)
    assert (parsed.rrule, parsed.starts_at) == (rule, first)


def test_without_a_start_a_pattern_still_needs_its_time():
    assert 'key "time" is missing' in refused({"type": "daily"})


def test_a_start_in_the_past_begins_at_the_next_occurrence_at_its_time():
    long_ago = datetime(2024, 1, 15, 8, 0, tzinfo=ZoneInfo(BERLIN))
    assert parse({"type": "daily"}, starting=long_ago).starts_at == utc(2025, 4, 15, 6, 0)


def test_a_custom_pattern_starts_now_or_at_its_time_of_day():
    assert parse({"type": "custom", "minutes": 120}).starts_at == utc(2025, 4, 14, 9, 0)
    with_time = parse({"type": "custom", "minutes": 120, "time": "08:00"})
    assert with_time.starts_at == utc(2025, 4, 15, 6, 0)  # today's 08:00 has passed
    assert with_time.rrule == "FREQ=MINUTELY;INTERVAL=120"


def test_a_json_pattern_takes_a_keyword_end_but_not_a_second_one():
    assert parse({"type": "daily", "time": "08:00"}, count=3).rrule.endswith(";COUNT=3")
    message = refused({"type": "daily", "time": "08:00", "count": 3}, until=date(2025, 5, 1))
    assert "give one end" in message


# -- Errors --------------------------------------------------------------------------------

BAD_PHRASES = [
    ("dialy 08:00", 'unknown word "dialy"'),
    ("daily 25:00", 'hour in "25:00" is out of range'),
    ("daily 08:60", 'minute in "08:60" is out of range'),
    ("daily 8", 'got "8"'),
    ("daily at", 'missing a time of day like 08:00 after "at"'),
    ("daily 08:00:30", 'cannot have seconds ("08:00:30")'),
    ("weekly funday 09:00", 'unknown day "funday"'),
    ("weekly 09:00", 'unknown day "09:00"'),
    ("monthly on 32 at 10:00", 'day of the month "32" must be from 1 to 31'),
    ("monthly on 0 at 10:00", 'day of the month "0"'),
    ("monthly on -1 at 10:00", 'got "-1"'),
    ("every 0m", 'minutes in "0m" must be from 1 to 1000'),
    ("every -2 hours", '"-2 hours"'),
    ("every 1001 minutes", '"1001 minutes" must be from 1 to 1000'),
    ("every 2 fortnights at 08:00", 'unknown unit "fortnights"'),
    ("every 2 hours at 08:00", 'unexpected "at"'),
    ("every 2nd tuesday", 'missing a time of day like 08:00 after "tuesday"'),
    ("every last friday at 10:00", '"every last" needs "of the month"'),
    ("2nd tuesday at 10:00", '"2nd tuesday" needs "of the month"'),
    ("5th tuesday of the month at 10:00", 'unknown word "5th"'),
    ("in -5 minutes", '"-5 minutes" must be from 1 to 1000'),
    ("in 0 hours", '"0 hours"'),
    ("in 2 months", 'unknown unit "months"'),
    ("in soon", 'got "soon"'),
    ("2025-02-30 10:00", 'there is no date "2025-02-30"'),
    ("2025-13-01 10:00", 'there is no date "2025-13-01"'),
    ("1800-01-01 10:00", 'year in "1800-01-01" is out of range'),
    ("2025-04-15T14:00Z", 'got "14:00z"'),
    ("today 10:00", "is in the past"),
    ("tomorrow", 'missing a time of day like 08:00 after "tomorrow"'),
    ("tomorrow 15:30 please", 'unexpected "please"'),
    ("daily 08:00 foo", 'unexpected "foo"'),
    ("daily, 08:00", 'got ","'),
    ("daily 08:00 until 2020-01-01", '"until 2020-01-01" is before the first occurrence'),
    ("daily 08:00 until 2025-02-30", 'there is no date "2025-02-30"'),
    ("daily 08:00 until soon", 'got "soon"'),
    ("daily 08:00 count 0", 'count in "count 0" must be from 1'),
    ("daily 08:00 for 3 days", 'expected "times", got "days"'),
    ("", "the phrase is empty"),
    ("   ", "the phrase is empty"),
    ("RRULE:FREQ=SOMETIMES", "FREQ must be MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or"),
    ("RRULE:FREQ=SOMETIMES", 'not "SOMETIMES"'),
    ("RRULE:", 'nothing after "RRULE:"'),
    ("RRULE:FREQ=SECONDLY", 'not "SECONDLY"'),
    ("RRULE:FREQ=DAILY;BYSECOND=5", "BYSECOND is not supported"),
    ("RRULE:FREQ=DAILY;INTERVAL=0", "INTERVAL must be from 1 to 1000"),
    ("RRULE:FREQ=DAILY;COUNT=0", "COUNT must be from 1"),
    ("RRULE:FREQ=DAILY;BYHOUR=25", 'BYHOUR "25" must be from 0 to 23'),
    ("RRULE:FREQ=DAILY;FOO=1", "FOO"),
    ("RRULE:FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
    ("RRULE:FREQ=DAILY;;BYHOUR=8", "is not a NAME=VALUE part"),
    ("RRULE:BYHOUR=8", "FREQ is missing"),
    ("RRULE:FREQ=DAILY;UNTIL=2025", 'UNTIL "2025"'),
    ("RRULE:FREQ=DAILY;UNTIL=20250101T000000Z", "its UNTIL is before the first occurrence"),
    ("RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "BYMONTH and BYMONTHDAY never meet"),
    ("RRULE:FREQ=DAILY;BYDAY=XX", "XX"),
    ("x" * 501, "longer than 500 characters"),
]


@pytest.mark.parametrize(("phrase", "says"), BAD_PHRASES)
def test_a_phrase_not_understood_is_refused_naming_what_and_showing_an_example(phrase, says):
    message = refused(phrase)
    assert says in message
    assert "Try" in message


BAD_PATTERNS = [
    ({"type": "weekly", "days": [7], "time": "08:00"}, 'key "days"'),
    ({"type": "weekly", "days": [], "time": "08:00"}, 'key "days"'),
    ({"type": "weekly", "days": [True], "time": "08:00"}, 'key "days"'),
    ({"type": "weekly", "days": "mon", "time": "08:00"}, 'key "days"'),
    ({"type": "weekly", "time": "08:00"}, 'key "days" is missing'),
    ({"type": "daily"}, 'key "time" is missing'),
    ({"type": "daily", "time": "8am"}, 'key "time": expected a time of day like 08:00, got "8am"'),
    ({"type": "daily", "time": 8}, 'key "time" must be text'),
    ({"type": "daily", "time": "24:00"}, 'key "time": the hour in "24:00"'),
    ({"time": "08:00"}, 'key "type" is missing'),
    ({"type": "yearly", "time": "08:00"}, 'key "type" must be daily, weekly, monthly or custom'),
    ({"type": "daily", "time": "08:00", "interval": True}, 'key "interval"'),
    ({"type": "daily", "time": "08:00", "interval": 0}, 'key "interval"'),
    ({"type": "daily", "time": "08:00", "interval": 1.5}, 'key "interval"'),
    ({"type": "daily", "time": "08:00", "every": 2}, 'unknown key "every"'),
    ({"type": "daily", "time": "08:00", "days": [1]}, 'unknown key "days"'),
    ({"type": "custom", "minutes": 60, "interval": 2}, 'unknown key "interval"'),
    ({"type": "monthly", "day": 0, "time": "08:00"}, 'key "day"'),
    ({"type": "monthly", "day": 32, "time": "08:00"}, 'key "day"'),
    ({"type": "monthly", "time": "08:00"}, 'key "day" is missing'),
    ({"type": "custom"}, 'key "minutes" is missing'),
    ({"type": "custom", "minutes": 0}, 'key "minutes"'),
    ({"type": "custom", "minutes": "120"}, 'key "minutes"'),
    ({"type": "daily", "time": "08:00", "until": "2025-13-01"}, 'key "until"'),
    ({"type": "daily", "time": "08:00", "until": 20250501}, 'key "until"'),
    ({"type": "daily", "time": "08:00", "until": "2020-01-01"}, "before the first occurrence"),
    ({"type": "daily", "time": "08:00", "count": "3"}, 'key "count"'),
    ({"type": "daily", "time": "08:00", "count": 0}, 'key "count"'),
    ({"type": "daily", "time": "08:00", "until": "2025-05-01", "count": 3}, "give one end"),
]


@pytest.mark.parametrize(("pattern", "says"), BAD_PATTERNS)
def test_a_bad_json_pattern_is_refused_naming_the_key_and_showing_an_example(pattern, says):
    for given_as in (pattern, _as_json_text(pattern)):
        message = refused(given_as)
        assert says in message
        assert "example" in message


def _as_json_text(pattern: dict) -> str:
    return json.dumps(pattern)


def test_text_that_opens_like_json_but_is_not_is_refused_with_a_pattern_example():
    message = refused('{"type": "daily", "time": 08:00}')
    assert "not valid JSON" in message
    assert 'For example: {"type": "weekly"' in message


def test_a_dict_key_that_is_not_text_is_refused():
    assert 'key "1" is not text' in refused({1: "daily", "type": "daily", "time": "08:00"})


def test_the_message_for_an_unknown_word_reads_as_documented():
    assert refused("dialy 08:00") == (
        'Could not understand "dialy 08:00": unknown word "dialy". Try "daily at 08:00", '
        '"every 2h", "tomorrow 15:30" or "weekly on mon,wed at 09:00".'
    )


def test_long_input_is_echoed_clipped():
    message = refused("dialy " + "x" * 300)
    assert "x" * 60 not in message
    assert len(message) < 300


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"zone_name": "Mars/Base"}, 'unknown time zone "Mars/Base"'),
        ({"zone_name": ""}, "unknown time zone"),
        ({"zone_name": "../../etc/passwd"}, "unknown time zone"),
        ({"now": datetime(2025, 4, 14, 11, 0)}, "now must be an aware datetime"),  # noqa: DTZ001
        ({"count": 0}, "count must be from 1"),
        ({"count": True}, "count must be from 1"),
        ({"until": datetime(2025, 5, 1, tzinfo=UTC)}, "until must be a date, not datetime"),
    ],
)
def test_bad_keyword_arguments_are_refused_with_phrase_error(kwargs, says):
    message = refused("daily 08:00", **kwargs)
    assert says in message
    assert "Try" in message


@pytest.mark.parametrize("phrase", [None, 42, ["daily 08:00"], b"daily 08:00"])
def test_input_that_is_neither_text_nor_a_dict_is_refused(phrase):
    assert "expected text or a JSON object" in refused(phrase)


def test_phrase_error_is_a_value_error():
    assert issubclass(PhraseError, ValueError)


# -- Anything at all: PhraseError or a schedule, never another exception -------------------

VALID = [phrase for phrase, _ in ONE_TIME] + [phrase for phrase, _, _ in RECURRING]
VALID += [phrase for phrase, _ in ENDS] + [json.dumps(pattern) for pattern, _ in PATTERNS]
WORDS = """
    daily weekly monthly hourly every in today tomorrow at on the of month day days last 1st
    2nd other mon tuesday weekdays and until count for times hours 08:00 9:00 25:00 9:60
    00:00:61 15 15th 31 32 0 -1 2h 30m 0m 99999999999 1e3 2025-05-01 2025-02-30 0000-01-01
    9999-12-31 2025-04-15T14:00 RRULE:FREQ=DAILY , { }
"""
VOCABULARY = WORDS.split()
RULE_PARTS = st.tuples(
    st.sampled_from(
        ["FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYHOUR", "BYMINUTE", "BYMONTHDAY"]
        + ["BYMONTH", "WKST", "BYSECOND", "X"]
    ),
    st.sampled_from(
        ["DAILY", "WEEKLY", "MONTHLY", "YEARLY", "SECONDLY", "0", "1", "2", "-1", "13", "31"]
        + ["MO", "+2TU", "MO,FR", "20250501T000000Z", "20260101", "", "1.5", "=", "99999999"]
    ),
)


# Hypothesis takes naive bounds for datetimes and adds the zone itself.
EARLIEST = datetime(2000, 1, 1)  # noqa: DTZ001
LATEST = datetime(2100, 1, 1)  # noqa: DTZ001


def _mutated(phrase: str, edits: list[tuple[int, str, bool]]) -> str:
    for position, character, insert in edits:
        at = position % (len(phrase) + 1)
        phrase = phrase[:at] + character + phrase[at + (0 if insert else 1) :]
    return phrase


ANY_INPUT = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(VOCABULARY), max_size=8).map(" ".join),
    st.builds(
        _mutated,
        st.sampled_from(VALID),
        st.lists(st.tuples(st.integers(0, 80), st.characters(), st.booleans()), max_size=4),
    ),
    st.lists(RULE_PARTS, max_size=5).map(
        lambda parts: "RRULE:" + ";".join(f"{name}={value}" for name, value in parts)
    ),
    st.dictionaries(
        st.sampled_from(["type", "interval", "days", "day", "time", "until", "count"])
        | st.sampled_from(["minutes", "extra"]),
        st.none()
        | st.booleans()
        | st.integers(-3, 40)
        | st.floats(allow_nan=True)
        | st.text(max_size=8)
        | st.sampled_from(["daily", "weekly", "monthly", "custom", "08:00", "2025-05-01"])
        | st.lists(st.integers(-1, 8) | st.text(max_size=2), max_size=4),
        max_size=6,
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    phrase=ANY_INPUT,
    now=st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=st.just(UTC)),
    zone_name=st.sampled_from([BERLIN, "America/New_York", "Australia/Lord_Howe", "UTC"]),
    count=st.none() | st.integers(-1, 3),
)
def test_any_input_gives_a_schedule_or_phrase_error_never_another_exception(
    phrase, now, zone_name, count
):
    try:
        parsed = parse_schedule(phrase, zone_name=zone_name, now=now, count=count)
    except PhraseError as error:
        message = str(error)
        assert "Try" in message or "example" in message
        assert len(message) < 500
        return
    assert parsed.starts_at.tzinfo is UTC
    assert parsed.starts_at >= now
    assert "BYSECOND" not in parsed.rrule
    assert not parsed.rrule.startswith("RRULE:")


# -- The engine's policy holds for the first occurrence too ---------------------------------


def test_a_first_daily_time_in_the_spring_gap_is_sent_at_the_end_of_the_gap():
    # Berlin jumps from 02:00 to 03:00 on 2025-03-30.
    parsed = parse("daily at 02:30", now=datetime(2025, 3, 29, 12, 0, tzinfo=ZoneInfo(BERLIN)))
    assert parsed.starts_at == utc(2025, 3, 30, 1, 0)  # 03:00 CEST
    assert parsed.rrule == "FREQ=DAILY;BYHOUR=2;BYMINUTE=30"


def test_monthly_on_31_asked_in_april_starts_on_the_last_day_of_april():
    parsed = parse("monthly on 31 at 10:00")
    assert parsed.starts_at == utc(2025, 4, 30, 8, 0)
