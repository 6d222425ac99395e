"""The job types that ship with the system (operations.job_types says how to add one)."""

from operations import retention
from operations.job_types import job_type
from scheduling import recovery


@job_type(
    "clean_up_old_data",
    schema={
        "type": "object",
        "properties": {
            "kinds": {"type": "array", "items": {"enum": retention.KIND_NAMES}, "minItems": 1}
        },
        "additionalProperties": False,
    },
)
def clean_up_old_data(payload: dict) -> dict[str, int]:
    """Deletes what is past its retention now (all kinds, or the `kinds` listed), as the
    hourly clean-up does: e.g. after lowering a retention setting."""
    return retention.clean_up_old_data(kinds=payload.get("kinds")).as_result()


@job_type("reap_stuck_deliveries", schema={"type": "object", "additionalProperties": False})
def reap_stuck_deliveries(payload: dict) -> dict[str, int]:
    """Hands deliveries stuck in queued or sending back to the broker now, without waiting
    for the reaper's round: e.g. right after a broker was restarted empty."""
    result = recovery.reap_stuck_deliveries()
    return {"lease_expired": result.lease_expired, "requeued": result.requeued}
