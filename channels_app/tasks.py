"""Celery tasks for what patients send; each calls a plain function."""

from celery import shared_task

from channels_app import inbound


@shared_task(name="channels_app.process_inbound_update")
def process_inbound_update(update_pk: int) -> str:
    return inbound.inbound_process(update_pk)


@shared_task(name="channels_app.sweep_inbound_updates")
def sweep_inbound_updates() -> dict:
    return inbound.inbound_sweep()
