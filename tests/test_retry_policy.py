"""How long a failing delivery keeps being tried: the shipped policy, simulated over the
delivery window in virtual time (the real backoff would take an hour to watch), and the
fixed schedule some clinics ask for."""

import random

import pytest
from django.conf import settings as django_settings

from scheduling.delivery import deliver, retry_delay
from scheduling.dispatch import dispatch_due
from scheduling.models import Delivery, DeliveryStatus
from scheduling.services import message_schedule
from tests.conftest import ago
from tests.fakes.telegram_server import Reply


def delivered_share(
    *, failure_rate: float, max_attempts: int, down_for: float = 0.0, runs: int = 20_000
) -> float:
    """The share of deliveries sent within the default window, when each try fails with
    `failure_rate` (and every try fails during the first `down_for` seconds)."""
    chance = random.Random(7)
    window = django_settings.DELIVERY_DEFAULT_WINDOW_SECONDS
    sent = 0
    for _ in range(runs):
        now, attempt = 0.0, 0
        while attempt < max_attempts and now <= window:
            attempt += 1
            if now >= down_for and chance.random() >= failure_rate:
                sent += 1
                break
            now += retry_delay(attempt, None)
    return sent / runs


def test_with_the_shipped_policy_a_provider_failing_half_its_calls_gets_all_but_a_few_through():
    share = delivered_share(failure_rate=0.5, max_attempts=django_settings.DELIVERY_MAX_ATTEMPTS)
    assert share >= 0.995, share
    # The check has teeth: five tries, the earlier default, gave up on about 3 %.
    assert delivered_share(failure_rate=0.5, max_attempts=5) < 0.98


def test_with_the_shipped_policy_ten_minutes_of_failures_lose_nothing_inside_the_window():
    # Without the breaker, which keeps deliveries waiting without a try during an outage.
    share = delivered_share(
        failure_rate=0.0, max_attempts=django_settings.DELIVERY_MAX_ATTEMPTS, down_for=600
    )
    assert share >= 0.995, share


def test_a_fixed_schedule_waits_as_written_and_repeats_its_last_wait(settings):
    settings.DELIVERY_RETRY_SCHEDULE_SECONDS = [300.0, 600.0, 1200.0]
    assert [retry_delay(n, None) for n in range(1, 6)] == [300, 600, 1200, 1200, 1200]
    assert retry_delay(1, 900.0) == 900  # never sooner than the provider asked


@pytest.mark.parametrize("schedule", [[], [300.0, 600.0, 1200.0]])
def test_a_failed_try_is_retried_at_the_policys_wait(
    settings, fake_telegram, make_patient, schedule
):
    settings.DELIVERY_RETRY_SCHEDULE_SECONDS = schedule
    message_schedule(patient=make_patient(), content="Take your dose", starts_at=ago(1))
    dispatch_due()
    delivery = Delivery.objects.get()
    fake_telegram.push(Reply.server_error(502))

    outcome = deliver(delivery.pk)

    assert outcome.status == DeliveryStatus.QUEUED
    if schedule:
        assert outcome.retry_in == 300
    else:
        assert 0 <= outcome.retry_in <= django_settings.DELIVERY_RETRY_BASE_SECONDS
