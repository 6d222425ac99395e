"""Demo data for `make run`: a clinic, a provider login and patients with schedules."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.utils import timezone

from patients.models import Channel, Contact, Membership, Organization, Patient, Role
from scheduling.services import message_schedule

DEMO_ORG_SLUG = "demo-clinic"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - a development login, printed by `make run`
# System periodic tasks (django_celery_beat) are the operators', not a clinic's.
CARE_TEAM_APPS = ("patients", "scheduling", "channels_app")


@dataclass(frozen=True)
class DemoPatient:
    name: str
    zone: str
    chat_id: str | None  # None: no messenger, reached through the web inbox
    schedules: tuple[tuple[str, int, str], ...]  # (content, first due in seconds, RRULE)


DEMO_PATIENTS = (
    DemoPatient("Ada Lovelace (demo)", "Europe/Berlin", "100001", (
        ("Welcome to Demo Clinic reminders. Reply /help any time.", 10, ""),
        ("Check-in: how are you feeling right now?", 20, "RRULE:FREQ=MINUTELY;INTERVAL=1"),
        ("<b>Medication</b>: take 1 tablet of metformin with breakfast.", 40,
         "RRULE:FREQ=DAILY"),
    )),
    DemoPatient("Ben Carter (demo)", "America/New_York", "100002", (
        ("Reminder: your appointment is tomorrow at 10:00.", 15, ""),
        ("Drink a glass of water.", 30, "RRULE:FREQ=MINUTELY;INTERVAL=2"),
    )),
    DemoPatient("Chloe Sato (demo)", "Asia/Tokyo", None, (
        ("Your lab results are ready in the clinic portal.", 25, ""),
    )),
)  # fmt: skip


def demo_organization() -> Organization:
    return Organization.objects.get(slug=DEMO_ORG_SLUG)


@transaction.atomic
def create_demo_data() -> bool:
    """Creates the demo once; returns False when it is already there."""
    organization, created = Organization.objects.get_or_create(
        slug=DEMO_ORG_SLUG, defaults={"name": "Demo Clinic"}
    )
    _ensure_demo_login(organization)
    if not created:
        return False
    now = timezone.now()
    for demo in DEMO_PATIENTS:
        patient = Patient.objects.create(
            organization=organization,
            name=demo.name,
            timezone=demo.zone,
            preferred_channel=Channel.TELEGRAM if demo.chat_id else Channel.WEB,
            onboarding_done=True,
        )
        if demo.chat_id:
            Contact.objects.create(
                patient=patient, channel=Channel.TELEGRAM, address=demo.chat_id, verified_at=now
            )
        for content, due_in, rule in demo.schedules:
            message_schedule(
                patient=patient,
                content=content,
                format="html" if "<b>" in content else "text",
                starts_at=now + timedelta(seconds=due_in),
                recurrence=rule,
                metadata={"demo": True},
            )
    return True


def _ensure_demo_login(organization: Organization) -> None:
    group, _ = Group.objects.get_or_create(name="Care team")
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=CARE_TEAM_APPS))
    user, created = User.objects.get_or_create(username=DEMO_USERNAME, defaults={"is_staff": True})
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save()
    user.groups.add(group)
    Membership.objects.get_or_create(
        user=user, organization=organization, defaults={"role": Role.ADMIN}
    )
