"""Custom jobs: a job type is a function registered under a name with the JSON Schema of
its payload. An operator schedules one (admin or API, operations.scheduled_jobs) with a
payload, which is checked against the schema before anything is saved; the
`operations.run_job` task runs it with retries, and its runs are in the job history.

Adding a job type:

    from operations.job_types import job_type

    @job_type("rebuild_report", schema={
        "type": "object",
        "properties": {"days": {"type": "integer", "minimum": 1}},
        "required": ["days"],
        "additionalProperties": False,
    })
    def rebuild_report(payload: dict) -> dict[str, int]:
        ...
        return {"rows": 12}  # counts, never patient data: it is shown in the history

and list the module in JOB_TYPE_MODULES (imported by every process at start-up), or put
it in operations/builtin_jobs.py. A handler that raises is retried with backoff up to the
job's max_retries; one that raises PermanentJobError, or is given a payload that no
longer fits the schema, fails at once.

The schemas are JSON Schema (draft 2020-12), checked with `jsonschema`: operators and API
clients send JSON, and a standard schema is both documentation and validation.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError


class PermanentJobError(Exception):
    """The job cannot succeed by trying again (bad payload, missing object)."""


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Callable[[dict], object]
    schema: dict
    description: str


_registry: dict[str, JobType] = {}


def job_type(name: str, *, schema: dict, description: str = "") -> Callable:
    """Registers the decorated function as the job type `name`."""
    Draft202012Validator.check_schema(schema)  # a broken schema fails at import, loudly

    def register(handler: Callable[[dict], object]) -> Callable[[dict], object]:
        text = description or (handler.__doc__ or "").strip().split("\n\n")[0]
        _registry[name] = JobType(name, handler, schema, " ".join(text.split()))
        return handler

    return register


def load_job_types() -> None:
    """Imports the built-in job types and the modules named in JOB_TYPE_MODULES."""
    for module in ["operations.builtin_jobs", *settings.JOB_TYPE_MODULES]:
        import_module(module)


def registered() -> dict[str, JobType]:
    return dict(sorted(_registry.items()))


def get(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise ValidationError({"job_type": f"Unknown job type {name!r}; known: {known}."}) from None


def validate_payload(name: str, payload: object) -> None:
    """A ValidationError on `payload` naming the first wrong field, e.g.
    "payload.kinds[0]: 'x' is not one of [...]"."""
    kind = get(name)
    errors = sorted(Draft202012Validator(kind.schema).iter_errors(payload), key=_where)
    if errors:
        raise ValidationError({"payload": [_describe(error) for error in errors[:5]]})


def _where(error: SchemaError) -> str:
    return _path(error.absolute_path)


def _path(parts) -> str:
    text = "payload"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _describe(error: SchemaError) -> str:
    return f"{_path(error.absolute_path)}: {error.message}"


def run(name: str, payload: dict) -> object:
    """Runs the job type's handler after checking the payload (a schema may have changed
    since the job was scheduled)."""
    try:
        validate_payload(name, payload)
    except ValidationError as error:
        raise PermanentJobError("; ".join(error.messages)) from error
    return get(name).handler(payload)
