"""After an outage longer than a delivery window the channel reopens by itself.

The provider answers 503 to everything for OUTAGE_SECONDS. The early messages, due when it
begins, have a window shorter than the outage: the breaker opens on their failures, and
they expire while it is open, so nothing that was in flight is left to probe it. The late
messages fall due while the breaker is open and are held; the last ones after the provider
is back. The dispatcher must take the probe itself once the open period is over: every
late and last delivery is sent within RECOVERY_LIMIT seconds of the recovery, every
early one is expired with its reason, and nothing stays held.

Shipped breaker settings (5 failures, 30 s open), retries and limits. Only the messages'
windows are shortened (20 s and 120 s instead of an hour), so that the outage outlasts
one of them within a minute. The second scenario restarts Redis, empty, while late
deliveries are held (the breaker's state goes with it), and runs two Beats at once; it
takes the chaos tests' short reaper settings, so that tasks lost with Redis come back
within seconds, as in test_redis_restart.py.
"""

import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db.models import Max
from django.utils import timezone

from patients.models import Channel, Contact, Organization, Patient
from scheduling.models import Delivery, DeliveryStatus
from scheduling.services import message_schedule
from tests.chaos.conftest import RECOVERY_ENV, report, status_counts, tally, wait_until_final

pytestmark = pytest.mark.chaos

EARLY, LATE, LAST = 30, 30, 10
EARLY_WINDOW, LATE_WINDOW = 20, 120  # seconds
LATE_DUE, LAST_DUE = 25, 45  # seconds after the outage began
OUTAGE_SECONDS = 35
RECOVERY_LIMIT = 60
TOTAL = EARLY + LATE + LAST


def schedule_groups(start) -> dict[str, list[int]]:
    """One-time Telegram messages, each to a chat of its own, in three groups by due time."""
    organization = Organization.objects.create(name="Outage clinic", slug="outage-clinic")
    groups: dict[str, list[int]] = {}
    plan = [
        ("early", EARLY, 0, EARLY_WINDOW),
        ("late", LATE, LATE_DUE, LATE_WINDOW),
        ("last", LAST, LAST_DUE, LATE_WINDOW),
    ]
    for name, count, due_in, window in plan:
        groups[name] = []
        for n in range(count):
            patient = Patient.objects.create(
                organization=organization, name=f"{name} {n}", timezone="UTC"
            )
            address = str(800_000_000 + len(groups) * 1000 + n)
            Contact.objects.create(
                patient=patient, channel=Channel.TELEGRAM, address=address, verified_at=start
            )
            message = message_schedule(
                patient=patient,
                content=f"Outage check {name} {n}",
                starts_at=start + timedelta(seconds=due_in),
                channel=Channel.TELEGRAM,
                delivery_window_seconds=window,
            )
            groups[name].append(message.pk)
    return groups


def deliveries_of(message_ids: list[int]):
    return Delivery.objects.filter(message_id__in=message_ids)


def run_outage(stack, fake_telegram, *, beats=("beat",), during_outage=None) -> dict:
    start = (timezone.now() + timedelta(seconds=3)).replace(microsecond=0)
    groups = schedule_groups(start)
    fake_telegram.outage(503)
    stack.start_worker("a", concurrency=4)
    stack.wait_ready("a")
    for name in beats:
        stack.start_beat(name)
    while timezone.now() < start + timedelta(seconds=OUTAGE_SECONDS):
        if during_outage and during_outage(start):
            during_outage = None
        time.sleep(0.2)
    calls_during_outage = len(fake_telegram.calls())
    fake_telegram.outage(None)
    recovered = timezone.now()

    done = wait_until_final(TOTAL, timeout=RECOVERY_LIMIT + 30)
    sent_last = deliveries_of(groups["late"] + groups["last"]).aggregate(Max("sent_at"))
    last_sent = sent_last["sent_at__max"]
    return {
        "groups": groups,
        "done": done,
        "recovery_to_last_sent": (last_sent - recovered).total_seconds() if last_sent else None,
        "calls_during_outage": calls_during_outage,
        "seconds": (timezone.now() - start).total_seconds(),
    }


def assert_the_channel_reopened(run: dict, stack) -> None:
    groups = run["groups"]
    assert run["done"], f"{status_counts()}\n{stack.logs_tail()}"
    early = list(deliveries_of(groups["early"]).values_list("status", "error_code"))
    assert len(early) == EARLY
    assert set(early) == {(DeliveryStatus.EXPIRED, "window_passed")}, early
    later = deliveries_of(groups["late"] + groups["last"])
    assert later.filter(status=DeliveryStatus.SENT).count() == LATE + LAST, status_counts()
    assert not Delivery.objects.filter(held_at__isnull=False).exists()
    assert run["recovery_to_last_sent"] <= RECOVERY_LIMIT, run["recovery_to_last_sent"]


@pytest.mark.timeout(240)
def test_after_an_outage_longer_than_a_window_the_dispatcher_probes_and_reopens_the_channel(
    chaos_stack, fake_telegram
):
    stack = chaos_stack()
    run = run_outage(stack, fake_telegram)
    result = tally(fake_telegram, TOTAL)
    report(
        "breaker_liveness",
        result,
        run["seconds"],
        recovery_to_last_sent=run["recovery_to_last_sent"],
        calls_during_outage=run["calls_during_outage"],
        breaker_open_seconds=django_settings.BREAKER_OPEN_SECONDS,
    )
    assert_the_channel_reopened(run, stack)
    assert result.unexplained_duplicates == 0 and result.received_not_sent == 0, result


@pytest.mark.timeout(240)
def test_the_channel_reopens_with_redis_restarted_in_the_outage_and_two_dispatchers(
    redis_for_everyone, chaos_stack, fake_telegram
):
    server = redis_for_everyone
    stack = chaos_stack(REDIS_URL=server.url, **RECOVERY_ENV)
    held_at_restart = []

    def restart_redis_once_late_ones_are_held(start) -> bool:
        if timezone.now() < start + timedelta(seconds=LATE_DUE + 2):
            return False
        held_at_restart.append(Delivery.objects.filter(held_at__isnull=False).count())
        server.kill9()
        time.sleep(1)
        server.start()
        return True

    run = run_outage(
        stack,
        fake_telegram,
        beats=("beat", "beat-2"),
        during_outage=restart_redis_once_late_ones_are_held,
    )
    result = tally(fake_telegram, TOTAL)
    report(
        "breaker_liveness_redis_restart_two_beats",
        result,
        run["seconds"],
        recovery_to_last_sent=run["recovery_to_last_sent"],
        calls_during_outage=run["calls_during_outage"],
        held_at_restart=held_at_restart,
        **stack.reaped(),
    )
    assert held_at_restart and held_at_restart[0] > 0, "nothing was held: the test proved less"
    assert_the_channel_reopened(run, stack)
    assert result.unexplained_duplicates == 0 and result.received_not_sent == 0, result
    assert stack.processes["beat-2"].poll() is None, "the second Beat did not survive"
