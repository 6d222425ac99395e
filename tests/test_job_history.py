"""The job history: each system job's runs recorded through Celery's signals, the ones
that run more often than once a minute summed up per minute."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection

from companion.celery import app
from operations import job_history
from operations.job_history import Finished, run_finished, run_started, write_past_minutes
from operations.models import JobOutcome, JobRun

MINUTE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def redis_clean():
    from channels_app.shared_state import redis_client

    redis_client().delete(job_history.PENDING_KEY)
    yield
    redis_client().delete(job_history.PENDING_KEY)


def tick(task_id: str, at: datetime, *, state="SUCCESS", retval: object = 3) -> JobRun | None:
    run_started(task_id, at=at)
    return run_finished(Finished("scheduling.dispatch_due", task_id, state, retval))


def test_the_dispatcher_is_recorded_once_a_minute_not_once_a_tick(db, redis_clean):
    for second in range(150):  # two and a half minutes of ticks, one of them failing
        failing = second == 70
        tick(
            f"t{second}",
            MINUTE + timedelta(seconds=second),
            state="FAILURE" if failing else "SUCCESS",
            retval=RuntimeError("database away") if failing else 2,
        )

    rows = list(JobRun.objects.order_by("started_at"))
    # The third minute is not over: it is written by the first tick after it.
    assert [r.started_at for r in rows] == [MINUTE, MINUTE + timedelta(minutes=1)]
    assert [r.runs for r in rows] == [60, 60]
    assert rows[0].outcome == JobOutcome.OK and rows[0].error == ""
    assert rows[0].result.startswith("60 runs, 0 failed, claimed=120")
    assert rows[1].outcome == JobOutcome.FAILED
    assert rows[1].error == "RuntimeError: database away"
    assert rows[1].result.startswith("60 runs, 1 failed, claimed=118")

    written = write_past_minutes(now=MINUTE + timedelta(minutes=3))
    assert [(r.started_at, r.runs) for r in written] == [(MINUTE + timedelta(minutes=2), 30)]
    assert JobRun.objects.count() == 3


def test_a_job_that_runs_less_often_gets_a_row_per_run(db, redis_clean):
    run_started("a")
    run = run_finished(Finished("scheduling.mark_missed_doses", "a", "SUCCESS", 4))
    run_started("b")
    retried = run_finished(Finished("operations.run_job", "b", "RETRY", _retry(KeyError("x"))))

    assert (run.job, run.outcome, run.result, run.runs) == (
        "scheduling.mark_missed_doses",
        JobOutcome.OK,
        "missed=4",
        1,
    )
    assert (retried.outcome, retried.error) == (JobOutcome.RETRYING, "KeyError: 'x'")


def _retry(error):
    from celery.exceptions import Retry

    return Retry(exc=error)


def test_a_long_error_is_cut_to_its_field(db):
    run_started("c")
    run = run_finished(
        Finished("operations.clean_up_old_data", "c", "FAILURE", ValueError("x" * 2000))
    )
    assert run.outcome == JobOutcome.FAILED and len(run.error) == 500


@pytest.mark.e2e
def test_a_real_worker_records_periodic_jobs_and_a_failing_one_with_its_error(celery_stack):
    # A real failure: the inbound sweep finds its table gone.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE patients_inboundupdate RENAME TO patients_inboundupdate_x")
    try:
        app.send_task("channels_app.sweep_inbound_updates", queue=django_settings.SCHEDULER_QUEUE)
        failed = _wait_for_run("channels_app.sweep_inbound_updates", celery_stack)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE patients_inboundupdate_x RENAME TO patients_inboundupdate")
    app.send_task("operations.clean_up_old_data", queue=django_settings.SCHEDULER_QUEUE)
    app.send_task("channels_app.sweep_inbound_updates", queue=django_settings.SCHEDULER_QUEUE)

    cleanup = _wait_for_run("operations.clean_up_old_data", celery_stack)
    assert failed.outcome == JobOutcome.FAILED
    assert failed.error.startswith("ProgrammingError: relation")
    assert "patients_inboundupdate" in failed.error
    assert cleanup.outcome == JobOutcome.OK and "batches=" in cleanup.result
    assert cleanup.duration_ms >= 0 and cleanup.finished_at >= cleanup.started_at
    swept = _wait_for_run("channels_app.sweep_inbound_updates", celery_stack, JobOutcome.OK)
    assert swept.error == ""
    # Beat's every-second dispatcher: one summary row once its first minute is over.
    summary = _wait_for_run("scheduling.dispatch_due", celery_stack, timeout=150)
    assert summary.runs > 1 and summary.result.startswith(f"{summary.runs} runs")


def _wait_for_run(job: str, stack, outcome: str | None = None, timeout: float = 60) -> JobRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = JobRun.objects.filter(job=job)
        if found := (runs.filter(outcome=outcome) if outcome else runs).first():
            return found
        time.sleep(0.2)
    raise AssertionError(f"no run of {job} recorded:\n{stack.log('worker')[-4000:]}")


def test_the_history_is_for_operators_only(client, db, organization):
    JobRun.objects.create(
        job="scheduling.reap_stuck_deliveries",
        started_at=MINUTE,
        finished_at=MINUTE,
        duration_ms=3,
        outcome=JobOutcome.OK,
        result="requeued=0",
    )
    staff = User.objects.create_user("staff", password=None, is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/operations/jobrun/").status_code == 403
    assert client.get("/ops/channels/").status_code == 302  # to the login page

    client.force_login(User.objects.create_superuser("root", password=None))
    page = client.get("/admin/operations/jobrun/?outcome=ok")
    assert page.status_code == 200 and b"requeued=0" in page.content
    panel = client.get("/ops/channels/")
    assert b"scheduling.reap_stuck_deliveries" in panel.content
