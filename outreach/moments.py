"""When a patient's check-ins fall, by the project's time policy (README, *Time*): a
local wall-clock time read in the patient's zone, a time in a DST gap moved to the first
moment after it, an ambiguous one read as the earlier; quiet hours win."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.models import CheckInPlan
from patients.models import Patient
from scheduling.occurrences import QuietHours
from scheduling.recurrence import local_wall_time, resolve_local


def check_in_moment(plan: CheckInPlan, zone: ZoneInfo, day: date) -> datetime:
    """The UTC instant of the plan's local time on `day`."""
    return resolve_local(datetime.combine(day, plan.local_time.replace(microsecond=0)), zone)


def next_check_in(plan: CheckInPlan, patient: Patient, *, after: datetime) -> tuple[date, datetime]:
    """The first local date not served yet (after plan.last_local_date) whose window has
    not ended by `after`, and its moment. A change of zone or time can move a date's
    moment; a date served once is never served again."""
    zone = ZoneInfo(patient.timezone)
    window = timedelta(minutes=plan.window_minutes)
    day = local_wall_time(after, zone).date() - timedelta(days=1)
    if plan.last_local_date and plan.last_local_date >= day:
        day = plan.last_local_date + timedelta(days=1)
    while True:
        moment = check_in_moment(plan, zone, day)
        if moment + window > after:
            return day, moment
        day += timedelta(days=1)


def quiet_hours_cover(patient: Patient, moment: datetime, window_minutes: int) -> bool:
    """Whether the patient's quiet hours hold the check-in back past its whole window."""
    if patient.quiet_hours_start is None:
        return False
    quiet = QuietHours(
        patient.quiet_hours_start, patient.quiet_hours_end, ZoneInfo(patient.timezone)
    )
    return quiet.release(moment) > moment + timedelta(minutes=window_minutes)
