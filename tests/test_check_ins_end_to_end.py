"""A check-in with real processes: Beat -> the planner -> the outreach worker writing it
with a (fake) language model -> the dispatcher -> a delivery worker -> (fake) Telegram."""

import os
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from outreach.models import CheckIn, CheckInSource
from outreach.plans import plan_check_ins_for
from scheduling.models import Delivery, DeliveryStatus
from tests.conftest import CeleryStack, test_database_url
from tests.fakes.llm_server import API_KEY

pytestmark = pytest.mark.e2e


@pytest.fixture
def companion_stack(transactional_db, fake_telegram, fake_llm, broker, tmp_path, settings):
    from scheduling.periodic import register_periodic_tasks

    settings.CHECK_IN_TICK_SECONDS = 1
    register_periodic_tasks()
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
        "TELEGRAM_BOT_TOKEN": django_settings.TELEGRAM_BOT_TOKEN,
        "SCHEDULER_TICK_SECONDS": "1",
        "CHECK_IN_TICK_SECONDS": "1",
        "LLM_BASE_URL": fake_llm.base_url,
        "LLM_API_KEY": API_KEY,
        "LLM_MODEL": "companion-e2e",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    stack = CeleryStack(tmp_path, env)
    queues = [
        django_settings.SCHEDULER_QUEUE,
        django_settings.INBOUND_QUEUE,
        *django_settings.DELIVERY_QUEUES.values(),
    ]
    common = ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    stack.start(
        "worker",
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            "2",
            "--hostname",
            f"e2e-deliver-{os.getpid()}@%h",
            *common,
        ],
    )
    # The writers have a pool of their own: a slow model never holds a delivery worker.
    stack.start(
        "writer",
        [
            "worker",
            "--queues",
            django_settings.OUTREACH_QUEUE,
            "--concurrency",
            "2",
            "--hostname",
            f"e2e-write-{os.getpid()}@%h",
            *common,
        ],
    )
    stack.start("beat", ["beat", "--loglevel", "INFO", "--pidfile=", "--max-interval", "1"])
    stack.wait_for_log("worker", "ready.")
    stack.wait_for_log("writer", "ready.")
    yield stack
    stack.stop()


def test_a_check_in_reaches_the_patient_once_inside_its_window_with_the_models_text(
    companion_stack, fake_telegram, fake_llm, make_patient
):
    fake_llm.text = "Good morning! The sun is out; how are you today?"
    patient = make_patient()
    patient.onboarding_done = True
    patient.save()
    wanted = (timezone.now() + timedelta(seconds=8)).astimezone(ZoneInfo(patient.timezone))
    plan_check_ins_for(patient, local_time=wanted.time().replace(microsecond=0), window_minutes=5)
    chat_id = patient.contacts.get().address

    assert fake_telegram.wait_for(lambda: fake_telegram.sent(chat_id), 40), (
        companion_stack.log("beat")[-2000:]
        + companion_stack.log("writer")[-3000:]
        + companion_stack.log("worker")[-3000:]
    )
    check_in = CheckIn.objects.get(patient=patient)
    assert check_in.source == CheckInSource.LLM and check_in.model == "companion-e2e"
    [call] = fake_telegram.sent(chat_id)
    assert call.params["text"] == "Good morning! The sun is out; how are you today?"
    # The fake answers before the worker commits what it answered: wait for the record.
    delivery = Delivery.objects.get(message=check_in.message)
    assert fake_telegram.wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENT).exists(), 20
    ), Delivery.objects.get(pk=delivery.pk).status
    delivery.refresh_from_db()
    assert check_in.due_at <= delivery.sent_at <= check_in.window_ends_at
    # Once: the planner keeps ticking every second, and nothing more arrives.
    time.sleep(3)
    assert len(fake_telegram.sent(chat_id)) == 1
    assert CheckIn.objects.filter(patient=patient).count() == 1
