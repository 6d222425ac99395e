"""Property tests over the published OpenAPI schema (schemathesis): for every operation,
inputs valid and invalid by the schema, sent through Django's WSGI application with a
provider's token, never make a server error, and every answer is one the schema
documents (status, content type, body). Half the path ids are pointed at real objects,
so detail routes and actions run past their 404."""

import json
from collections import Counter

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from operations.models import ScheduledJob
from operations.scheduled_jobs import scheduled_job_save
from patients.provisioning import provider_create
from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.models import MessageTemplate
from scheduling.services import message_schedule
from tests.conftest import ago, from_now

EXAMPLES_PER_OPERATION = 30
examples_run = {"count": 0, "operations": set(), "statuses": Counter()}


@pytest.fixture(autouse=True)
def requests_keep_the_test_transaction(db):
    """Django's WSGI application, called inside the test's transaction: like Django's test
    client, it must not close the connection after each request (that ends the transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(organization, make_patient, fake_telegram):
    """A provider, a patient, messages with a sent delivery, a template, a custom job: real
    targets."""
    provider = provider_create(
        organization_slug=organization.slug, username="fuzz", admin=True, new_token=True
    )
    patient = make_patient()
    message_schedule(patient=patient, content="due", starts_at=ago(1))
    dispatch_due()
    for delivery_id in patient.scheduled_messages.values_list("deliveries", flat=True):
        deliver(delivery_id)
    recurring = message_schedule(
        patient=patient, content="daily", starts_at=from_now(600), recurrence="FREQ=DAILY"
    )
    template = MessageTemplate.objects.create(
        organization=organization, key="fuzz", language="en", body="Hi {name}"
    )
    job = scheduled_job_save(
        ScheduledJob(name="fuzz", job_type="clean_up_old_data", every_seconds=3600)
    )
    return {
        "token": provider.token,
        "ids": {
            "patients": patient.pk,
            "messages": recurring.pk,
            "templates": template.pk,
            "jobs": job.pk,
        },
    }


def aim_at_real_objects(case, world) -> None:
    """Every other generated id becomes the id of a real object of that collection."""
    generated = (case.path_parameters or {}).get("id")
    if isinstance(generated, int) and generated % 2 == 0:
        collection = case.path.strip("/").split("/")[2]
        case.path_parameters["id"] = world["ids"][collection]


def published_schema() -> dict:
    """The document /schema/ serves, from drf-spectacular's generator: the view itself
    needs a login, and there is no database when the module is collected."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document, renderer_context={}))


schema = schemathesis.openapi.from_dict(published_schema())
schema.app = get_wsgi_application()  # operations are called through Django's WSGI app


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error_and_answers_are_as_documented(case, world):
    aim_at_real_objects(case, world)
    examples_run["count"] += 1
    examples_run["operations"].add(f"{case.method} {case.path}")
    headers = {"Authorization": f"Token {world['token']}"}
    if case.path.endswith("/health/") and case.method == "GET":
        # Its documented 503 means "a dependency is down" (here: no worker, no Beat);
        # it must still be the health report, not an error page.
        response = case.call(headers=headers)
        examples_run["statuses"][response.status_code] += 1
        assert response.status_code in (200, 503)
        assert set(response.json()) == {"status", "failing", "checks", "checked_at", "age_seconds"}
        return
    response = case.call_and_validate(
        headers=headers,
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )
    examples_run["statuses"][response.status_code] += 1


def test_zz_report_how_many_examples_ran(capsys):
    """Runs after the property test in this module: prints the count for the report."""
    with capsys.disabled():
        print(
            f"\nschemathesis: {examples_run['count']} examples over "
            f"{len(examples_run['operations'])} method and path pairs; answers by status: "
            f"{dict(sorted(examples_run['statuses'].items()))}"
        )
