"""Celery tasks: each calls a plain function."""

from celery import shared_task

from outreach import planning, writing


@shared_task(name="outreach.plan_check_ins")
def plan_check_ins() -> dict[str, int]:
    started = planning.plan_check_ins()
    late = writing.finish_late_check_ins()
    return {"started": started, "finished_late": late}


@shared_task(name=planning.WRITE_TASK)
def write_check_in(check_in_id: int) -> str:
    if not isinstance(check_in_id, int) or isinstance(check_in_id, bool):
        return "invalid"
    return writing.write_check_in(check_in_id)
