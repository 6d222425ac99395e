"""The time policy: local wall-clock times across DST, gaps, folds, month ends.

Each property is checked against the zone database directly (does this wall time exist,
is it ambiguous), not against the code under test.
"""

import calendar
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.recurrence import Rule, check_rule_is_practical, local_wall_time, resolve_local

EXAMPLES = 500
DST_ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]
ALL_ZONES = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})


def naive(*args) -> datetime:
    return datetime(*args)  # noqa: DTZ001 - a local wall-clock time, zone applied later


def wall_exists(wall: datetime, zone: ZoneInfo) -> bool:
    return local_wall_time(wall.replace(tzinfo=zone).astimezone(UTC), zone) == wall


def wall_is_ambiguous(wall: datetime, zone: ZoneInfo) -> bool:
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return wall_exists(wall, zone) and first != second


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """Every instant in the year at which the zone's UTC offset changes (to the minute)."""
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(hours=1)
    while moment < end:
        if zone.utcoffset(moment) != zone.utcoffset(moment + step):
            low, high = moment, moment + step
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                low, high = (low, middle) if zone.utcoffset(middle) != zone.utcoffset(low) else (
                    middle, high)  # fmt: skip
            found.append(high)
        moment += step
    return found


def daily_occurrences(zone_name: str, first: datetime, days: int) -> list[datetime]:
    rule = Rule("FREQ=DAILY", starts_at=first, zone_name=zone_name)
    found, after = [], first - timedelta(seconds=1)
    for _ in range(days):
        after = rule.after(after)
        found.append(after)
    return found


def assert_policy(occurrence: datetime, wall: datetime, zone: ZoneInfo) -> None:
    """The documented answer for one wanted local wall time."""
    if not wall_exists(wall, zone):
        # Sent at the first valid minute after the gap: just before it, the clock read
        # earlier than the wanted time; at it, later.
        assert local_wall_time(occurrence - timedelta(seconds=1), zone) < wall
        assert local_wall_time(occurrence, zone) > wall
    elif wall_is_ambiguous(wall, zone):
        assert occurrence == wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        assert occurrence < wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    else:
        assert local_wall_time(occurrence, zone) == wall


@pytest.mark.parametrize("zone_name", DST_ZONES)
def test_every_dst_transition_of_a_year_keeps_daily_times_by_the_policy(zone_name):
    zone = ZoneInfo(zone_name)
    changes = transitions(zone, 2025)
    if zone_name == "Asia/Kolkata":
        assert changes == []  # the zone with no DST: nothing moves
        changes = [datetime(2025, 6, 1, tzinfo=UTC)]
    else:
        assert len(changes) == 2
    for change in changes:
        local_day = local_wall_time(change, zone).date()
        # Every quarter hour of the transition day, and the day before and after.
        for minutes in range(0, 24 * 60, 15):
            wanted = time(minutes // 60, minutes % 60)
            start = resolve_local(datetime.combine(local_day - timedelta(days=1), wanted), zone)
            found = daily_occurrences(zone_name, start, 3)
            for offset, occurrence in enumerate(found):
                assert_policy(occurrence, datetime.combine(
                    local_day - timedelta(days=1 - offset), wanted), zone)  # fmt: skip
            assert found == sorted(set(found))


def test_a_daily_rule_stays_at_the_same_local_time_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    found = daily_occurrences("Europe/Berlin", datetime(2025, 3, 28, 9, 0, tzinfo=berlin), 5)
    assert [f.astimezone(berlin).strftime("%m-%d %H:%M %Z") for f in found] == [
        "03-28 09:00 CET", "03-29 09:00 CET", "03-30 09:00 CEST", "03-31 09:00 CEST",
        "04-01 09:00 CEST"]  # fmt: skip


def test_a_time_in_the_spring_gap_is_sent_when_the_clocks_have_jumped():
    new_york = ZoneInfo("America/New_York")
    start = resolve_local(naive(2025, 3, 8, 2, 30), new_york)
    found = daily_occurrences("America/New_York", start, 3)
    assert [f.astimezone(new_york).strftime("%d %H:%M %Z") for f in found] == [
        "08 02:30 EST", "09 03:00 EDT", "10 02:30 EDT"]  # fmt: skip


def test_an_ambiguous_time_is_sent_once_at_its_first_occurrence():
    new_york = ZoneInfo("America/New_York")
    start = resolve_local(naive(2025, 11, 1, 1, 30), new_york)
    found = daily_occurrences("America/New_York", start, 3)
    assert [f.astimezone(new_york).strftime("%d %H:%M %Z") for f in found] == [
        "01 01:30 EDT", "02 01:30 EDT", "03 01:30 EST"]  # fmt: skip


def test_lord_howe_half_hour_gap_moves_to_its_end():
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    # 2025-10-05: clocks go from 02:00 to 02:30.
    moved = resolve_local(naive(2025, 10, 5, 2, 10), lord_howe)
    assert local_wall_time(moved, lord_howe) == naive(2025, 10, 5, 2, 30)


def test_every_two_hours_stays_two_real_hours_apart_on_dst_nights():
    new_york = ZoneInfo("America/New_York")
    for night in (naive(2025, 3, 8, 22, 0), naive(2025, 11, 1, 22, 0)):
        rule = Rule("FREQ=HOURLY;INTERVAL=2", starts_at=night.replace(tzinfo=new_york),
                    zone_name="America/New_York")  # fmt: skip
        start = night.replace(tzinfo=new_york).astimezone(UTC)
        found = list(rule.between(start, start + timedelta(hours=12)))
        assert [b - a for a, b in zip(found, found[1:], strict=False)] == [timedelta(hours=2)] * 5


def test_monthly_on_31_is_sent_on_the_last_day_of_shorter_months():
    rule = Rule("FREQ=MONTHLY;BYMONTHDAY=31", starts_at=datetime(2025, 1, 31, 9, tzinfo=UTC),
                zone_name="UTC")  # fmt: skip
    found = list(rule.between(datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)))
    assert [f.date() for f in found] == [
        date(y, m, calendar.monthrange(y, m)[1]) for y in (2025, 2026) for m in range(1, 13)
    ]
    assert {f.time() for f in found} == {time(9, 0)}


def test_the_last_day_of_the_month_rule_and_a_count_on_month_ends():
    last = Rule("FREQ=MONTHLY;BYMONTHDAY=-1", starts_at=datetime(2024, 1, 31, 18, tzinfo=UTC),
                zone_name="UTC")  # fmt: skip
    found = list(last.between(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)))
    assert [f.day for f in found] == [31, 29, 31]
    counted = Rule("FREQ=MONTHLY;BYMONTHDAY=30;COUNT=3", zone_name="UTC",
                   starts_at=datetime(2025, 1, 30, 9, tzinfo=UTC))  # fmt: skip
    found = list(
        counted.between(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    )
    assert [f.date() for f in found] == [date(2025, 1, 30), date(2025, 2, 28), date(2025, 3, 30)]


def test_a_time_in_a_gap_that_ends_past_midnight_is_sent_once_on_the_next_date():
    # America/Scoresbysund springs forward from 23:00 to 00:00 on 2025-03-29: the 23:00
    # reminder of that Saturday goes at 00:00 on Sunday, and Sunday's own at 23:00.
    zone = ZoneInfo("America/Scoresbysund")
    starts_at = datetime(2025, 3, 28, 1, tzinfo=UTC)
    rule = Rule("FREQ=DAILY;BYHOUR=23;BYMINUTE=0", zone_name=zone.key, starts_at=starts_at)
    found = list(rule.between(datetime(2025, 3, 28, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)))
    walls = [local_wall_time(f, zone) for f in found]
    assert walls == [
        naive(2025, 3, 27, 23),
        naive(2025, 3, 28, 23),
        naive(2025, 3, 30, 0),
        naive(2025, 3, 30, 23),
        naive(2025, 3, 31, 23),
    ]


def test_until_in_utc_as_rfc_5545_writes_it_ends_the_rule():
    rule = Rule("RRULE:FREQ=DAILY;UNTIL=20250103T235959Z", zone_name="Europe/Berlin",
                starts_at=datetime(2025, 1, 1, 8, tzinfo=UTC))  # fmt: skip
    found = list(rule.between(datetime(2024, 12, 31, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)))
    assert [f.day for f in found] == [1, 2, 3]


def test_a_rule_that_ended_has_no_next_occurrence():
    rule = Rule(
        "FREQ=DAILY;COUNT=3", starts_at=datetime(2025, 1, 1, 8, tzinfo=UTC), zone_name="UTC"
    )
    assert rule.after(datetime(2025, 1, 10, tzinfo=UTC)) is None


moments = st.datetimes(min_value=naive(2020, 1, 1), max_value=naive(2030, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)
times_of_day = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
LOCAL_RULES = ["FREQ=DAILY", "FREQ=DAILY;INTERVAL=2", "FREQ=WEEKLY;BYDAY=MO,WE,FR",
               "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "FREQ=MONTHLY;BYMONTHDAY=15",
               "FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=MONTHLY;BYDAY=+2TU"]  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(zone_name=st.sampled_from(ALL_ZONES + DST_ZONES * 20), rule=st.sampled_from(LOCAL_RULES),
       day=moments, wanted=times_of_day)  # fmt: skip
def test_local_rules_keep_the_wall_clock_in_any_zone(zone_name, rule, day, wanted):
    zone = ZoneInfo(zone_name)
    start_wall = datetime.combine(local_wall_time(day, zone).date(), wanted)
    start = resolve_local(start_wall, zone)
    rule += f";BYHOUR={wanted.hour};BYMINUTE={wanted.minute}"
    parsed = Rule(rule, starts_at=start, zone_name=zone_name)
    found = list(parsed.between(start - timedelta(seconds=1), start + timedelta(days=400)))
    assert found
    # Strictly increasing, so none twice.
    assert all(a < b for a, b in zip(found, found[1:], strict=False))
    # Each one at the wanted local time by the policy, and none skipped: the local
    # dates are exactly the dates the rule names (dateutil's own expansion, naive), save
    # where the wanted time lies in a gap that ends past midnight (America/Scoresbysund
    # jumps from 23:00 to 00:00): sent at the gap's end, on the next local date.
    walls = list(parsed.rrule.between(start_wall - timedelta(seconds=1),
                                      start_wall + timedelta(days=400), inc=True))  # fmt: skip
    dates = [
        local_wall_time(resolve_local(w, zone), zone).date()
        if not wall_exists(w, zone)
        else w.date()
        for w in walls
        if resolve_local(w, zone) <= found[-1]
    ]
    assert [local_wall_time(f, zone).date() for f in found] == dates
    assert {w.time() for w in walls} == {wanted}
    for occurrence, wall in zip(found, walls, strict=False):
        assert_policy(occurrence, wall, zone)


@settings(max_examples=EXAMPLES, deadline=None)
@given(zone_name=st.sampled_from(DST_ZONES), start=moments,
       rule=st.sampled_from(["FREQ=HOURLY", "FREQ=HOURLY;INTERVAL=3", "FREQ=MINUTELY;INTERVAL=30"]),
       after=st.integers(min_value=0, max_value=300 * 86400))  # fmt: skip
def test_interval_rules_step_in_real_time_and_next_is_the_first_after(
    zone_name, start, rule, after
):
    parsed = Rule(rule, starts_at=start, zone_name=zone_name)
    step = {"FREQ=HOURLY": 3600, "FREQ=HOURLY;INTERVAL=3": 10800}.get(rule, 1800)
    moment = start + timedelta(seconds=after)
    found = parsed.after(moment)
    assert found > moment
    assert (found - start).total_seconds() % step == 0
    assert found - moment <= timedelta(seconds=step)


@pytest.mark.parametrize(
    ("rule", "says"),
    [("FREQ=MINUTELY;BYSETPOS=5;BYMINUTE=1", "BYSETPOS cannot be combined with FREQ=MINUTELY"),
     ("FREQ=HOURLY;BYMONTHDAY=31", "BYMONTHDAY cannot be combined with FREQ=HOURLY"),
     ("FREQ=DAILY;BYYEARDAY=366;BYMONTH=1", "only allowed with FREQ=YEARLY"),
     ("FREQ=YEARLY;BYYEARDAY=366;BYMONTH=1", "no occurrence within ten years")],
)  # fmt: skip
def test_rules_too_costly_to_expand_are_refused_before_any_search(rule, says):
    with pytest.raises(ValueError, match=says):
        check_rule_is_practical(rule, starts_at=datetime(2025, 4, 14, 9, tzinfo=UTC),
                                zone_name="Europe/Berlin")  # fmt: skip


def test_a_leap_day_rule_is_practical():
    check_rule_is_practical("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", zone_name="UTC",
                            starts_at=datetime(2025, 4, 14, 9, tzinfo=UTC))  # fmt: skip
