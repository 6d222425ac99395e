"""What the channels report to Prometheus: the provider's answer time, the shared rate
limiter's waits and the breakers' changes. Labels are bounded (channel, outcome, change):
never a recipient, a patient or an organization.

The breakers' current state is read from Redis when Prometheus scrapes
(operations/metrics_collector.py), so every process reports the same one.
"""

from prometheus_client import Counter, Histogram

# From a few milliseconds (the web inbox, a provider next door) to a send's timeout.
PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A reserved slot is waited for in the task up to DELIVERY_RATE_INLINE_WAIT_SECONDS (2).
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

provider_request_seconds = Histogram(
    "companion_provider_request_duration_seconds",
    "Time the provider took to answer one send, by channel and outcome "
    "(sent, transient, permanent, blocked).",
    ["channel", "outcome"],
    buckets=PROVIDER_BUCKETS,
)
rate_limit_wait_seconds = Histogram(
    "companion_rate_limit_wait_seconds",
    "Wait until a reserved rate-limit slot, per send, by channel.",
    ["channel"],
    buckets=WAIT_BUCKETS,
)
rate_limit_deferred = Counter(
    "companion_rate_limit_deferred_total",
    "Sends whose rate-limit slot was further off than the inline wait: they went back to "
    "the database, held until their slot.",
    ["channel"],
)
rate_limit_slots_missed = Counter(
    "companion_rate_limit_slots_missed_total",
    "Sends that woke up too late for their slot and took a new one.",
    ["channel"],
)
breaker_transitions = Counter(
    "companion_breaker_transitions_total",
    "Circuit breaker changes by channel: opened, reopened (a failed probe) or closed.",
    ["channel", "change"],
)


def provider_answered(channel: str, outcome: str, seconds: float) -> None:
    """One send's answer (outcome: sent, transient, permanent or blocked) and its time."""
    provider_request_seconds.labels(channel, outcome).observe(seconds)
