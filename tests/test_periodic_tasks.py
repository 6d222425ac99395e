from django_celery_beat.models import PeriodicTask

from scheduling.periodic import register_periodic_tasks


def test_it_registers_dispatch_and_reaper_idempotently(db, settings):
    settings.SCHEDULER_TICK_SECONDS = 5
    register_periodic_tasks()
    register_periodic_tasks()

    tasks = {t.task: t for t in PeriodicTask.objects.all()}
    assert set(tasks) == {
        "scheduling.dispatch_due",
        "scheduling.reap_stuck_deliveries",
        "scheduling.mark_missed_doses",
        "channels_app.sweep_inbound_updates",
        "outreach.plan_check_ins",
        "operations.evaluate_alerts",
        "operations.send_daily_reports",
        "operations.clean_up_old_data",
    }
    dispatch = tasks["scheduling.dispatch_due"]
    assert (dispatch.interval.every, dispatch.interval.period) == (5, "seconds")
    assert dispatch.queue == settings.SCHEDULER_QUEUE


def test_it_follows_the_tick_setting_but_keeps_an_operators_disable(db, settings):
    register_periodic_tasks()
    PeriodicTask.objects.filter(task="scheduling.reap_stuck_deliveries").update(enabled=False)
    settings.SCHEDULER_TICK_SECONDS = 2

    register_periodic_tasks()

    assert PeriodicTask.objects.get(task="scheduling.dispatch_due").interval.every == 2
    assert not PeriodicTask.objects.get(task="scheduling.reap_stuck_deliveries").enabled


def test_every_registered_task_exists_in_the_celery_app(db):
    from companion.celery import app

    app.loader.import_default_modules()
    for task in register_periodic_tasks():
        assert task.task in app.tasks


def test_the_backup_is_scheduled_only_where_it_is_enabled(db, settings):
    settings.BACKUP_ENABLED = False
    assert "operations.back_up_database" not in {t.task for t in register_periodic_tasks()}

    settings.BACKUP_ENABLED, settings.BACKUP_INTERVAL_HOURS = True, 12
    backup = next(t for t in register_periodic_tasks() if t.task == "operations.back_up_database")

    assert (backup.interval.every, backup.interval.period) == (12 * 3600, "seconds")
