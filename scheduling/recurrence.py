"""RFC 5545 recurrence rules, read in the patient's local time, answered in UTC."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr


def parse_rule(rule: str, *, starts_at: datetime, zone_name: str) -> rrule:
    """The rule anchored at starts_at's local wall-clock time; ValueError if malformed."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:") :]
    local_start = starts_at.astimezone(ZoneInfo(zone_name)).replace(tzinfo=None)
    parsed = rrulestr(text, dtstart=local_start)
    if not isinstance(parsed, rrule):
        raise ValueError("only a single RRULE line is accepted")
    return parsed


def next_occurrence_after(
    rule: str, *, starts_at: datetime, zone_name: str, after: datetime
) -> datetime | None:
    """The first occurrence strictly later than `after` (UTC), or None when the rule ends.

    Occurrences are local wall-clock times (09:00 stays 09:00 across DST); each is turned
    into UTC with the zone's rules of that day.
    """
    zone = ZoneInfo(zone_name)
    parsed = parse_rule(rule, starts_at=starts_at, zone_name=zone_name)
    local_after = after.astimezone(zone).replace(tzinfo=None)
    candidate = parsed.after(local_after, inc=False)
    while candidate is not None:
        as_utc = candidate.replace(tzinfo=zone).astimezone(UTC)
        if as_utc > after:
            return as_utc
        candidate = parsed.after(candidate, inc=False)
    return None
