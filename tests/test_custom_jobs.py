"""Custom jobs: a registered job type scheduled from the API or the admin with a payload
checked against its schema, run by Beat and a real worker with retries, and recorded."""

import time

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

import tests.job_types_for_tests  # noqa: F401 - registers test_count in this process
from channels_app.shared_state import redis_client
from operations.models import JobOutcome, JobRun, ScheduledJob
from tests.job_types_for_tests import TRIES_KEY

JOBS = "/api/scheduler/jobs/"


@pytest.fixture
def operator_api(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root", password=None))
    return client


def test_a_bad_payload_is_a_400_naming_the_field_and_nothing_is_saved(operator_api):
    answer = operator_api.post(
        JOBS,
        {"name": "n", "job_type": "test_count", "payload": {"up_to": "ten"}, "every_seconds": 60},
        format="json",
    )

    assert answer.status_code == 400
    assert answer.json() == {"payload": ["payload.up_to: 'ten' is not of type 'integer'"]}
    assert not ScheduledJob.objects.exists() and not PeriodicTask.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"payload": {}}, "payload", "'up_to' is a required property"),
        ({"payload": {"up_to": 1, "extra": 1}}, "payload", "('extra' was unexpected)"),
        ({"job_type": "nope"}, "job_type", "Unknown job type 'nope'"),
        ({"run_at": "2030-01-01T00:00:00Z"}, "run_at", "exactly one of"),
        ({"every_seconds": None, "crontab": "99 * * * *"}, "crontab", "not a valid minute"),
        ({"every_seconds": None, "crontab": "* *"}, "crontab", "Five fields"),
        ({"every_seconds": 1}, "every_seconds", "At least 10"),
        ({"max_retries": 50}, "max_retries", "At most 10"),
    ],
)
def test_each_bad_field_is_named(operator_api, change, field, words):
    body = {"name": "n", "job_type": "test_count", "payload": {"up_to": 1}, "every_seconds": 60}
    answer = operator_api.post(JOBS, {**body, **change}, format="json")

    assert answer.status_code == 400, answer.json()
    assert words in " ".join(answer.json()[field])
    assert not ScheduledJob.objects.exists()


def test_only_operators_see_or_schedule_jobs(db, organization):
    from patients.models import Membership

    member = User.objects.create_user("member", password=None)
    Membership.objects.create(user=member, organization=organization, role="admin")
    client = APIClient()
    client.force_authenticate(member)

    assert client.get(JOBS).status_code == 403
    assert client.get(JOBS + "runs/").status_code == 403
    assert (
        client.post(JOBS, {"name": "n", "job_type": "test_count"}, format="json").status_code == 403
    )


def test_a_good_job_gets_its_beat_row_and_the_types_are_listed(operator_api):
    answer = operator_api.post(
        JOBS,
        {
            "name": "nightly",
            "job_type": "test_count",
            "payload": {"up_to": 5},
            "crontab": "30 2 * * *",
        },
        format="json",
    )

    assert answer.status_code == 201, answer.json()
    job = ScheduledJob.objects.get()
    beat = job.periodic_task
    assert (beat.task, beat.args, beat.crontab.minute, beat.crontab.hour) == (
        "operations.run_job",
        f"[{job.pk}]",
        "30",
        "2",
    )
    assert answer.json()["runs"] == "crontab 30 2 * * * (UTC)"
    types = operator_api.get(JOBS + "types/").json()
    assert {"clean_up_old_data", "reap_stuck_deliveries", "test_count"} <= set(types)
    assert types["test_count"]["schema"]["required"] == ["up_to"]

    assert operator_api.delete(f"{JOBS}{job.pk}/").status_code == 204
    assert not PeriodicTask.objects.filter(pk=beat.pk).exists()


def test_the_admin_form_names_a_bad_payload(client, db):
    client.force_login(User.objects.create_superuser("root", password=None))
    page = client.post(
        "/admin/operations/scheduledjob/add/",
        {
            "name": "n",
            "job_type": "test_count",
            "payload": '{"up_to": 0}',
            "every_seconds": "60",
            "max_retries": "3",
            "enabled": "on",
        },
    )

    assert page.status_code == 200
    assert "payload.up_to: 0 is less than the minimum of 1" in page.content.decode()
    assert not ScheduledJob.objects.exists()

    saved = client.post(
        "/admin/operations/scheduledjob/add/",
        {
            "name": "n",
            "job_type": "test_count",
            "payload": '{"up_to": 2}',
            "every_seconds": "60",
            "max_retries": "3",
            "enabled": "on",
        },
    )
    assert saved.status_code == 302
    assert ScheduledJob.objects.get().periodic_task.interval.every == 60


@pytest.fixture
def job_worker_env(monkeypatch):
    """The worker imports the test job types and retries after a fraction of a second."""
    monkeypatch.setenv("JOB_TYPE_MODULES", "tests.job_types_for_tests")
    monkeypatch.setenv("JOB_RETRY_BASE_SECONDS", "0.2")


@pytest.mark.e2e
def test_jobs_scheduled_by_the_api_run_in_a_real_worker_with_retries(
    job_worker_env, celery_stack, operator_api
):
    redis_client().delete(TRIES_KEY + "flaky", TRIES_KEY + "doomed", TRIES_KEY + "fine")
    now = timezone.now().isoformat()
    for name, payload, retries in [
        ("fine", {"up_to": 7, "key": "fine"}, 3),
        ("flaky", {"up_to": 1, "fail_times": 2, "key": "flaky"}, 3),
        ("doomed", {"up_to": 1, "fail_times": 9, "key": "doomed"}, 1),
    ]:
        answer = operator_api.post(
            JOBS,
            {
                "name": name,
                "job_type": "test_count",
                "payload": payload,
                "run_at": now,
                "max_retries": retries,
            },
            format="json",
        )
        assert answer.status_code == 201, answer.json()

    runs = _wait_for_outcomes(celery_stack, {("fine", "ok"), ("flaky", "ok"), ("doomed", "failed")})

    assert runs["fine"] == [(JobOutcome.OK, "", "counted=7, tries=1")]  # once, as asked
    assert runs["flaky"] == [
        (JobOutcome.RETRYING, "RuntimeError: try 1 failed on purpose", "retry in 0.2s"),
        (JobOutcome.RETRYING, "RuntimeError: try 2 failed on purpose", "retry in 0.4s"),
        (JobOutcome.OK, "", "counted=1, tries=3"),
    ]
    assert runs["doomed"] == [
        (JobOutcome.RETRYING, "RuntimeError: try 1 failed on purpose", "retry in 0.2s"),
        (JobOutcome.FAILED, "RuntimeError: try 2 failed on purpose", ""),
    ]


def _wait_for_outcomes(stack, wanted: set, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = {}
        for job in ScheduledJob.objects.all():
            rows = JobRun.objects.filter(job=f"job: {job.name}")
            runs[job.name] = [(r.outcome, r.error, r.result) for r in rows.order_by("started_at")]
        if {(name, rows[-1][0]) for name, rows in runs.items() if rows} >= wanted:
            return runs
        time.sleep(0.2)
    raise AssertionError(f"runs: {runs}\n{stack.log('worker')[-4000:]}")
