"""Celery tasks: each calls a plain function."""

from celery import shared_task

from outreach import follow_ups, planning, writing


@shared_task(name="outreach.plan_check_ins")
def plan_check_ins() -> dict[str, int]:
    started = planning.plan_check_ins()
    late = writing.finish_late_check_ins()
    return {"started": started, "finished_late": late, "follow_ups": follow_ups.plan_follow_ups()}


@shared_task(name=follow_ups.WRITE_TASK)
def write_follow_up(follow_up_id: int) -> str:
    if not isinstance(follow_up_id, int) or isinstance(follow_up_id, bool):
        return "invalid"
    return follow_ups.write_follow_up(follow_up_id)


@shared_task(name=planning.WRITE_TASK)
def write_check_in(check_in_id: int) -> str:
    if not isinstance(check_in_id, int) or isinstance(check_in_id, bool):
        return "invalid"
    return writing.write_check_in(check_in_id)
