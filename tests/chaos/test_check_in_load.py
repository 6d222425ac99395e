"""2,000 patients whose check-ins fall in the same minute, a language model answering in
1 s, LLM_MAX_CONCURRENCY=8 (the default): every patient gets their check-in once, inside
its window, written by the model or by the fallback template, and the model never has
more than 8 requests open. Real worker, writer and Beat processes; shipped settings.
"""

import os
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from outreach.models import CheckIn, CheckInPlan, CheckInStatus
from patients.models import Organization, Patient
from scheduling.models import Delivery, DeliveryStatus
from tests.fakes.llm_server import API_KEY

pytestmark = pytest.mark.chaos

PATIENTS = 2000


@pytest.mark.timeout(420)
def test_2000_check_ins_in_one_minute_each_arrive_once_inside_the_window(
    chaos_stack, fake_llm, settings
):
    fake_llm.delay = 1.0
    organization = Organization.objects.create(name="Busy clinic", slug="busy-clinic")
    patients = Patient.objects.bulk_create(
        Patient(
            organization=organization,
            name=f"Patient {n}",
            timezone="UTC",
            preferred_channel="web",
            onboarding_done=True,
        )
        for n in range(PATIENTS)
    )
    # Their moments spread over the same minute, starting 30 s from now.
    start = timezone.now() + timedelta(seconds=30)
    CheckInPlan.objects.bulk_create(
        CheckInPlan(
            patient=patient,
            local_time=(start + timedelta(seconds=n % 60)).time(),
            next_at=start + timedelta(seconds=n % 60),
        )
        for n, patient in enumerate(patients)
    )
    stack = chaos_stack(LLM_BASE_URL=fake_llm.base_url, LLM_API_KEY=API_KEY)
    stack.start_worker("a", concurrency=3)
    # Two writers of 6 processes: more processes than model slots, so the cap is shared.
    for name in ("w1", "w2"):
        stack._start(
            name,
            [
                "worker",
                "--queues",
                django_settings.OUTREACH_QUEUE,
                "--concurrency",
                "6",
                "--loglevel",
                "INFO",
                "--hostname",
                f"chaos-{name}-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        )
    stack.wait_ready("a", "w1", "w2")
    stack.start_beat()
    started = time.monotonic()

    deadline = time.monotonic() + 360
    sent = Delivery.objects.filter(status=DeliveryStatus.SENT)
    while sent.count() < PATIENTS and time.monotonic() < deadline:
        time.sleep(1)
    seconds = time.monotonic() - started
    check_ins = list(CheckIn.objects.select_related("message"))
    sources = Counter(c.source for c in check_ins)
    reasons = Counter(c.fallback_reason for c in check_ins if c.fallback_reason)
    deliveries = {d.message_id: d for d in sent}
    inside = sum(
        1
        for c in check_ins
        if c.message_id in deliveries
        and c.due_at - timedelta(minutes=30) <= deliveries[c.message_id].sent_at <= c.window_ends_at
    )
    print(
        f"\nCHAOS check_in_load: patients={PATIENTS} check_ins={len(check_ins)} "
        f"sent={len(deliveries)} inside_window={inside} sources={dict(sources)} "
        f"fallback_reasons={dict(reasons)} most_model_requests_at_once="
        f"{fake_llm.most_in_flight} model_calls={len(fake_llm.calls())} "
        f"seconds={seconds:.1f}"
    )

    assert len(check_ins) == PATIENTS, f"{len(check_ins)} check-ins\n{stack.logs_tail()}"
    assert all(c.status == CheckInStatus.SCHEDULED for c in check_ins), Counter(
        c.status for c in check_ins
    )
    assert len(deliveries) == PATIENTS, stack.logs_tail()
    assert Delivery.objects.count() == PATIENTS, "a check-in was sent twice"
    assert inside == PATIENTS
    assert fake_llm.most_in_flight <= settings.LLM_MAX_CONCURRENCY
    assert sources["llm"] > 0, "the model wrote none: the test proved less"
