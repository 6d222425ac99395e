"""What a scrape answers, for the web's /metrics and for the exporters of the workers and
Beat: this process's metrics (or, in multiprocess mode, those of every process of the
node, from PROMETHEUS_MULTIPROC_DIR) and the shared state read at that moment
(metrics_collector.py).

The web's /metrics asks for METRICS_TOKEN as a bearer token; without one set it does not
exist (404), except with DEBUG on. The exporters have no token: they listen on
METRICS_ADDRESS (127.0.0.1 unless set), a port reached only from inside the deployment.
"""

import hmac
import logging

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

from operations.metrics_collector import OutsideRequests, SharedStateCollector

logger = logging.getLogger(__name__)


class _ThisProcess:
    """prometheus-client's default registry (this process's metrics, django-prometheus's
    among them) as one collector of another registry."""

    def collect(self):
        return REGISTRY.collect()


def scrape_registry(*, outside_requests: bool = False) -> CollectorRegistry:
    """A registry whose every collection reads the metrics afresh."""
    registry = CollectorRegistry(auto_describe=False)
    if settings.PROMETHEUS_MULTIPROC_DIR:
        MultiProcessCollector(registry, settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry.register(_ThisProcess())
    shared = SharedStateCollector()
    registry.register(OutsideRequests(shared) if outside_requests else shared)
    return registry


def render() -> tuple[bytes, str]:
    """The body and content type of a scrape."""
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


def scrape_allowed(authorization: str) -> bool | None:
    """True: answer. False: a token is set and this is not it. None: no token is set, and
    /metrics does not exist (outside DEBUG)."""
    token = settings.METRICS_TOKEN
    if not token:
        return True if settings.DEBUG else None
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def start_exporter(role: str) -> int | None:
    """Serves this node's metrics on METRICS_ADDRESS:METRICS_PORT from a thread of the
    calling (main) process; returns the port, or None when METRICS_PORT is 0 or the port
    is taken (logged: the node goes on without its exporter rather than not at all)."""
    port = settings.METRICS_PORT
    if not port:
        return None
    registry = scrape_registry(outside_requests=True)
    try:
        start_http_server(port, addr=settings.METRICS_ADDRESS, registry=registry)
    except OSError as exc:
        logger.error(
            "metrics: %s exporter cannot listen on %s:%s (%s)",
            role,
            settings.METRICS_ADDRESS,
            port,
            exc,
        )
        return None
    logger.info("metrics: %s exporter on %s:%s/metrics", role, settings.METRICS_ADDRESS, port)
    return port
