"""Celery tasks for what patients send; each calls a plain function.

Their names are the ones they had in channels_app: a task already queued, and the
sweep's PeriodicTask row, still find them after an upgrade."""

from celery import shared_task

from conversations import inbound


@shared_task(name=inbound.PROCESS_TASK)
def process_inbound_update(update_pk: int) -> str:
    return inbound.inbound_process(update_pk)


@shared_task(name="channels_app.sweep_inbound_updates")
def sweep_inbound_updates() -> dict:
    return inbound.inbound_sweep()
