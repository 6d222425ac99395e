from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.recurrence import next_occurrence_after, parse_rule

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_daily_rule_stays_at_the_same_local_time_across_dst():
    start = datetime(2025, 3, 28, 9, 0, tzinfo=BERLIN)  # two days before spring forward
    after = start.astimezone(UTC)
    local_times = []
    for _ in range(5):
        after = next_occurrence_after("FREQ=DAILY", starts_at=start, zone_name="Europe/Berlin",
                                      after=after)  # fmt: skip
        local_times.append(after.astimezone(BERLIN).strftime("%m-%d %H:%M %Z"))
    assert local_times == ["03-29 09:00 CET", "03-30 09:00 CEST", "03-31 09:00 CEST",
                           "04-01 09:00 CEST", "04-02 09:00 CEST"]  # fmt: skip


def test_a_rule_that_ended_has_no_next_occurrence():
    start = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
    after = start + timedelta(days=10)
    assert next_occurrence_after("FREQ=DAILY;COUNT=3", starts_at=start, zone_name="UTC",
                                 after=after) is None  # fmt: skip


RULES = ["FREQ=DAILY", "FREQ=HOURLY;INTERVAL=2", "FREQ=WEEKLY;BYDAY=MO,WE,FR",
         "FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=MINUTELY;INTERVAL=30"]  # fmt: skip
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
moments = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31)).map(  # noqa: DTZ001
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=150, deadline=None)
@given(rule=st.sampled_from(RULES), zone=st.sampled_from(ZONES), start=moments,
       offset=st.integers(min_value=-3 * 86400, max_value=400 * 86400))  # fmt: skip
def test_the_next_occurrence_is_the_first_one_after_the_given_moment(rule, zone, start, offset):
    after = start + timedelta(seconds=offset)
    found = next_occurrence_after(rule, starts_at=start, zone_name=zone, after=after)
    assert found is not None and found > after
    # No occurrence of the rule lies between `after` and the one returned.
    parsed = parse_rule(rule, starts_at=start, zone_name=zone)
    local = ZoneInfo(zone)
    earlier = parsed.before(found.astimezone(local).replace(tzinfo=None))
    if earlier is not None:
        assert earlier.replace(tzinfo=local).astimezone(UTC) <= after
