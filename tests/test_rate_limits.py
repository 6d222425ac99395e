"""Request rates: the API per user and, where it needs no token, per address; the
webhooks per endpoint and address (docs/security.md, 11). Each test sends one request
more than the shipped default allows."""

import pytest
from django.conf import settings

from patients.provisioning import provider_create
from tests.test_api import API, token_client


def rate(name: str) -> int:
    return int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][name].split("/")[0])


def over_the_limit(call, limit: int):
    """Makes `limit` calls that must all pass, then the one past the limit."""
    statuses = {call().status_code for _ in range(limit)}
    assert 429 not in statuses, statuses
    return call()


def test_the_defaults_are_600_a_minute_per_user_and_60_per_address_without_a_token():
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["user"] == "600/min"
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["anon"] == "60/min"
    assert settings.WEBHOOK_RATE_PER_ADDRESS == "1200/min"


def test_a_user_past_the_rate_gets_429_with_retry_after_and_others_do_not(organization):
    alice = token_client(
        provider_create(organization_slug=organization.slug, username="al", new_token=True).token
    )
    bob = token_client(
        provider_create(organization_slug=organization.slug, username="bo", new_token=True).token
    )

    refused = over_the_limit(lambda: alice.get(f"{API}/templates/"), rate("user"))

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"].lower()
    assert bob.get(f"{API}/templates/").status_code == 200


def test_an_address_past_the_rate_without_a_token_gets_429_and_another_address_does_not(client):
    refused = over_the_limit(
        lambda: client.get(f"{API}/no-such-thing/", REMOTE_ADDR="203.0.113.7"), rate("anon")
    )

    assert refused.status_code == 429 and int(refused["Retry-After"]) <= 60
    assert client.get(f"{API}/no-such-thing/", REMOTE_ADDR="203.0.113.8").status_code == 404


def test_a_forged_forwarded_for_header_does_not_make_a_new_address(client):
    def call():
        return client.get(
            f"{API}/no-such-thing/",
            REMOTE_ADDR="203.0.113.9",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{next(forged)}",
        )

    forged = iter(range(1000))
    assert over_the_limit(call, rate("anon")).status_code == 429


def test_the_health_probe_has_its_own_more_generous_rate(client, db):
    for _ in range(rate("anon") + 1):
        client.get(f"{API}/no-such-thing/")
    assert client.get(f"{API}/health/").status_code != 429  # the anonymous rate is spent


def test_a_webhook_flood_from_one_address_gets_429_with_retry_after(client, db):
    limit = int(settings.WEBHOOK_RATE_PER_ADDRESS.split("/")[0])

    def call(address="192.0.2.10"):
        # No secret: each call is refused with 403 after the count, as a flood would be.
        return client.post(
            "/telegram/webhook/", data="{}", content_type="application/json", REMOTE_ADDR=address
        )

    refused = over_the_limit(call, limit)

    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert call("192.0.2.11").status_code == 403  # another address is not held back


@pytest.mark.parametrize(
    "path", ["/channels/whatsapp/inbound/", "/channels/twilio/inbound/", "/channels/twilio/status/"]
)
def test_every_webhook_is_bounded(client, db, settings, path):
    settings.WEBHOOK_RATE_PER_ADDRESS = "3/min"
    statuses = [client.post(path, data={}, REMOTE_ADDR="192.0.2.20").status_code for _ in range(4)]
    assert statuses[:3] != [429] * 3 and statuses[3] == 429
