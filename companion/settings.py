"""All configuration, read from the environment (see companion/env.py and README)."""

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from companion import env

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Django core -------------------------------------------------------------------
DEBUG = env.boolean("DJANGO_DEBUG", default=False)
SECRET_KEY = env.string("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG"  # noqa: S105
# The key signs the patients' inbox links and the sessions: a guessable one lets anyone
# sign them (docs/security.md, item 3).
elif not DEBUG and (weakness := env.secret_key_weakness(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY {weakness}; with DJANGO_DEBUG off it must be 50 or more random "
        "characters: python -c 'import secrets; print(secrets.token_urlsafe(50))' makes one"
    )
# Row-level security (patients/tenant_wall.py): the role a care team's requests take.
TENANT_WALL_ENABLED = env.boolean("TENANT_WALL_ENABLED", default=True)
TENANT_WALL_ROLE = env.string("TENANT_WALL_ROLE", "companion_tenant")
# Encryption at rest (patients/encryption.py, docs/security.md): Fernet keys, newest first,
# and the key of the blind index that finds an address without decrypting. With DEBUG
# on and none given, development keys derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env.words("FIELD_ENCRYPTION_KEYS", [])
BLIND_INDEX_KEY = env.string("BLIND_INDEX_KEY")
# Off only to measure what encryption costs (make bench); rows already encrypted stay
# readable either way.
FIELD_ENCRYPTION_ENABLED = env.boolean("FIELD_ENCRYPTION_ENABLED", default=True)
if not FIELD_ENCRYPTION_KEYS or not BLIND_INDEX_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS and BLIND_INDEX_KEY must be set when DJANGO_DEBUG is off "
            "(docs/security.md, *Keys*; `manage.py rotate_encryption_key --new-key` makes one)"
        )
    _derived = hashlib.sha256(f"field-encryption:{SECRET_KEY}".encode()).digest()
    FIELD_ENCRYPTION_KEYS = FIELD_ENCRYPTION_KEYS or [base64.urlsafe_b64encode(_derived).decode()]
    BLIND_INDEX_KEY = BLIND_INDEX_KEY or f"blind-index:{SECRET_KEY}"
ALLOWED_HOSTS = env.words("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.words("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS: secure whenever DEBUG is off (manage.py check --deploy has nothing to say) ---
# Each can be switched off for a plain-HTTP setup (the test suite, a trial on one machine);
# docs/security.md, item 15.
SECURE_SSL_REDIRECT = env.boolean("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Liveness probes (compose, Kubernetes) and Prometheus reach the container over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.boolean("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = env.integer(
    "DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env.boolean("DJANGO_SECURE_HSTS_PRELOAD", True)
# Behind a proxy that terminates TLS, the header it sets to "https" (X-Forwarded-Proto);
# the proxy must overwrite any such header a client sends. Empty: no proxy is trusted.
SECURE_PROXY_SSL_HEADER = env.proxy_ssl_header("DJANGO_SECURE_PROXY_SSL_HEADER")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    # Sign-in: lockout after repeated failures, and TOTP for providers who set one up
    # (care_team/login_security.py).
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and Redoc served from this site, not a CDN (docs/security.md, item 16).
    "drf_spectacular_sidecar",
    "auditlog",
    # Request metrics at /metrics (operations/metrics_exposition.py).
    "django_prometheus",
    # The layers, lowest first; each imports only those listed before it
    # (the contract in .importlinter, checked by make test).
    "patients",
    "channels_app",
    "scheduling",
    "outreach",
    "operations",
    "conversations",
    "care_team",
]

MIDDLEWARE = [
    # First and (but for axes) last: request counts and latencies for /metrics.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The care team's language: the browser's Accept-Language, then a provider's own
    # choice (care_team/languages.py). Patients' texts name their language themselves.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "care_team.languages.ProviderLanguageMiddleware",
    # PostgreSQL row-level security for a signed-in care team (patients/tenant_wall.py).
    "care_team.tenancy.TenantWallMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Records who made each change in the audit trail (django-auditlog).
    "auditlog.middleware.AuditlogMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# A Content-Security-Policy on every response (django-csp): scripts, styles and the rest
# from this site only, nothing inline, no plugins, no framing (docs/security.md, item 16).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # Swagger UI and the admin draw some icons from data: URLs.
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

ROOT_URLCONF = "companion.urls"
WSGI_APPLICATION = "companion.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL only, because the dispatcher relies on SKIP LOCKED -------
DATABASE_URL = env.url(
    "DATABASE_URL",
    "postgres://postgres@127.0.0.1:5432/companion",
    schemes=("postgres", "postgresql", "pgsql"),
)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env.integer("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
# Fail fast instead of hanging when PostgreSQL is unreachable.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.integer(
    "DATABASE_CONNECT_TIMEOUT", 5, minimum=1
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Signing in (admin and web UI): lockout, second factor, sessions ---------------
AUTHENTICATION_BACKENDS = [
    "care_team.login_security.LockoutBackend",  # refuses a locked-out username + address
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env.boolean("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = env.integer("AXES_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_COOLOFF_TIME = timedelta(
    minutes=env.integer("AXES_COOLOFF_MINUTES", 15, minimum=1, maximum=24 * 60)
)
# One username from one address: a guesser is stopped without letting anyone lock a
# provider out from everywhere by typing their name.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "care_team.login_security.client_ip"
AXES_LOCKOUT_TEMPLATE = "care_team/web/locked_out.html"
# Providers with a confirmed TOTP device always give its code; with this on, everyone must
# have one.
REQUIRE_TOTP = env.boolean("REQUIRE_TOTP", False)
OTP_TOTP_ISSUER = "Companion"
# A session ends when the browser closes, and in any case after SESSION_COOKIE_AGE.
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.boolean("SESSION_EXPIRE_AT_BROWSER_CLOSE", True)
SESSION_COOKIE_AGE = env.integer("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "admin:login"

# --- Redis and Celery --------------------------------------------------------------
REDIS_URL = env.url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss"))

# Django's cache is shared by every web process through Redis: API throttles and the
# health report's cache mean nothing if each process counts on its own. Keys are prefixed
# so they never meet the broker's or the rate limiter's. Its calls take well under a
# millisecond; a Redis that hangs costs a request half a second at most, after which the
# throttles let it through and the health check runs uncached.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
# /api/scheduler/health/ runs its checks (a second or more) at most once in this many
# seconds; requests in between get the last report and its age. 0: every request.
HEALTH_CACHE_SECONDS = env.integer("HEALTH_CACHE_SECONDS", 5, minimum=0, maximum=300)

# One queue per channel, so a slow or broken provider never holds up the others, and
# a deployment can scale the workers of each channel on its own queue depth.
CHANNELS = ("telegram", "whatsapp", "sms", "email", "web")
SCHEDULER_QUEUE = "scheduler"
DELIVERY_QUEUES = {channel: f"deliver.{channel}" for channel in CHANNELS}

CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task held unacknowledged for longer is handed out again; due times live in
    # the database, so no task is meant to wait anywhere near this long.
    "visibility_timeout": 3600,
    # Each queue is one Redis list per step, and workers take from step 0 first: the most
    # urgent deliveries go ahead of a routine backlog (scheduling/queueing.py, BROKER_PRIORITY).
    "priority_steps": [0, 3, 6, 9],
    "sep": ":",
    "socket_connect_timeout": 5,
    "socket_timeout": 30,
}
CELERY_TASK_DEFAULT_QUEUE = SCHEDULER_QUEUE
# The companion's writing (language model, weather) has its own queue and workers, so a
# slow model never holds a delivery worker.
OUTREACH_QUEUE = "outreach"
# What patients send (bot commands, answers, inbound WhatsApp and SMS) is processed on its
# own queue: a patient's reply never waits behind the dispatcher's ticks, and its workers
# scale apart from the scheduler's (deploy/kubernetes/).
INBOUND_QUEUE = "inbound"
CELERY_TASK_QUEUES = [
    Queue(SCHEDULER_QUEUE),
    *(Queue(q) for q in DELIVERY_QUEUES.values()),
    Queue(OUTREACH_QUEUE),
    Queue(INBOUND_QUEUE),
]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Two pool processes per core: a delivery process waits for the provider's answers for
# most of a batch (150 ms against about 65 ms of CPU for 25 sends), and another process
# uses the core meanwhile (docs/design-decisions.md, Throughput). In a container with a
# CPU limit, set it to twice the limit: the host's core count is what Python sees.
CELERY_WORKER_CONCURRENCY = env.integer(
    "CELERY_WORKER_CONCURRENCY", 2 * len(os.sched_getaffinity(0)), minimum=1, maximum=64
)
# Sends in progress when the broker connection drops finish and are acknowledged late;
# cancelling them (Celery 6's default) would send them again: keep today's behaviour.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Celery's Django fixup closes the database connection around every task unless this
# is set, and a new PostgreSQL session costs several ms: four times the cost of a small
# task. Connections are instead kept, and closed by Django's own rules around each task
# (CONN_MAX_AGE, broken connections, failed health checks: companion/celery.py).
CELERY_DB_REUSE_MAX = env.integer("CELERY_DB_REUSE_MAX", 1_000_000, minimum=0)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 300
# No "task-sent" event per publish: it doubled the dispatcher's Redis writes. Flower
# still sees every task through the workers' received/started/succeeded events.
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# django-celery-beat's DatabaseScheduler, touching BEAT_HEARTBEAT_FILE after each tick.
CELERY_BEAT_SCHEDULER = "companion.beat_scheduler:HeartbeatScheduler"

# --- Scheduling --------------------------------------------------------------------
# Every second by default: an idle tick costs about a millisecond (one index read, see
# docs/benchmarks.md), and the tick bounds how late a reminder can be.
SCHEDULER_TICK_DEFAULT = 1
SCHEDULER_TICK_SECONDS = env.integer(
    "SCHEDULER_TICK_SECONDS", SCHEDULER_TICK_DEFAULT, minimum=1, maximum=3600
)
# Rules that repeat every few seconds exist for tests and demos, never for patients.
SCHEDULER_ALLOW_SECONDLY = env.boolean("SCHEDULER_ALLOW_SECONDLY", False)
# After an outage, at most this many missed occurrences of one message are recorded as
# expired rows (the care team's view of what was missed); the rest are counted in the log.
DISPATCH_MISSED_RECORD_LIMIT = env.integer(
    "DISPATCH_MISSED_RECORD_LIMIT", 1000, minimum=1, maximum=100_000
)
DISPATCH_BATCH_SIZE = env.integer("DISPATCH_BATCH_SIZE", 500, minimum=1, maximum=10_000)
# Retries go on while the delivery window lasts: exponential backoff with full jitter from
# the base, capped at the maximum, stopped by the window. The attempt count is a backstop
# sized to fit the default hour: twenty tries take about half an hour of backoff, so a
# provider failing half its calls still gets more than 99.9 % through (five tries, the
# earlier default, gave up on 3 % within the first minute). Or a fixed schedule, as some
# clinics expect: DELIVERY_RETRY_SCHEDULE_SECONDS=300,600,1200 waits 5, 10, then 20
# minutes before each further try, the last wait repeating.
DELIVERY_MAX_ATTEMPTS = env.integer("DELIVERY_MAX_ATTEMPTS", 20, minimum=1, maximum=100)
DELIVERY_RETRY_BASE_SECONDS = env.number("DELIVERY_RETRY_BASE_SECONDS", 2.0, minimum=0.1)
DELIVERY_RETRY_MAX_SECONDS = env.number("DELIVERY_RETRY_MAX_SECONDS", 300.0, minimum=1.0)
DELIVERY_RETRY_SCHEDULE_SECONDS = env.numbers("DELIVERY_RETRY_SCHEDULE_SECONDS", [], minimum=1.0)
DELIVERY_DEFAULT_WINDOW_SECONDS = env.integer("DELIVERY_DEFAULT_WINDOW_SECONDS", 3600, minimum=60)
# A send in progress holds a lease on its delivery, renewed every third of it by a
# heartbeat while the send lasts; a lease that runs out belongs to a dead worker, and the
# reaper (every DELIVERY_REAPER_SECONDS) hands the delivery to a live one. Together they
# bound what a lost worker node costs: lease + reaper interval + one send, about 20 s.
DELIVERY_LEASE_SECONDS = env.integer("DELIVERY_LEASE_SECONDS", 15, minimum=3)
DELIVERY_REAPER_SECONDS = env.integer("DELIVERY_REAPER_SECONDS", 5, minimum=1)
# A delivery handed to the broker whose task has not started this long after is handed
# over again (the task was lost: a Redis restart, a worker that died before claiming
# it). The broker holds only work due now (DISPATCH_QUEUE_SECONDS of it at the rate
# limit), so a task is not legitimately this late; a duplicate task is harmless anyway,
# since a delivery is claimed once.
DELIVERY_REQUEUE_AFTER_SECONDS = env.integer("DELIVERY_REQUEUE_AFTER_SECONDS", 15, minimum=5)
# One deliver_message task carries up to this many deliveries of one channel: they are
# claimed in one transaction, sent concurrently and recorded together. Larger batches
# cost less per message; a worker killed mid-send leaves up to this many in the crash
# window (docs/design-decisions.md, Throughput).
DELIVERY_BATCH_SIZE = env.integer("DELIVERY_BATCH_SIZE", 25, minimum=1, maximum=500)

# --- Channels ----------------------------------------------------------------------
# Shared by all workers through Redis (channels_app/ratelimit.py, channels_app/breaker.py).
DELIVERY_RATE_LIMIT_ENABLED = env.boolean("DELIVERY_RATE_LIMIT_ENABLED", True)
# A rate-limit slot up to this far ahead is reserved and waited for in the task; a
# delivery whose slot is further off waits in the database until then.
# Two seconds, longer than the dispatcher's tick: deliveries waiting for a slot are
# published again by the tick, and with slots reserved this far ahead a tick that comes
# a little late (its worker busy) leaves no second of the limit unused (at 1 s, Telegram's
# 29/s came to 28.0/s; docs/benchmarks.md, scenario 6).
DELIVERY_RATE_INLINE_WAIT_SECONDS = env.number("DELIVERY_RATE_INLINE_WAIT_SECONDS", 2.0)
BREAKER_FAILURE_THRESHOLD = env.integer("BREAKER_FAILURE_THRESHOLD", 5, minimum=1, maximum=1000)
BREAKER_OPEN_SECONDS = env.number("BREAKER_OPEN_SECONDS", 30.0, minimum=0.5)
# Backpressure: the broker holds only what can be sent now. A channel's queue takes at
# most DISPATCH_QUEUE_SECONDS of sends at its rate limit (and never more than
# DISPATCH_MAX_QUEUED_PER_CHANNEL deliveries, each waiting task counted as a full batch),
# and nothing while its breaker is open. The rest, and every delivery waiting for a
# later moment (a rate-limit slot, a retry, the breaker), waits in the database and is
# published by the dispatcher's tick when due, the most urgent first: a lost worker
# holds no waiting work, and an outage cannot flood Redis.
DISPATCH_QUEUE_SECONDS = env.number("DISPATCH_QUEUE_SECONDS", 2.0, minimum=0.5)
DISPATCH_MAX_QUEUED_PER_CHANNEL = env.integer(
    "DISPATCH_MAX_QUEUED_PER_CHANNEL", 5000, minimum=10, maximum=10_000_000
)
TELEGRAM_BOT_TOKEN = env.string("TELEGRAM_BOT_TOKEN")
TELEGRAM_API_BASE_URL = env.url(
    "TELEGRAM_API_BASE_URL", "https://api.telegram.org", schemes=("http", "https")
)
TELEGRAM_TIMEOUT_SECONDS = env.number("TELEGRAM_TIMEOUT_SECONDS", 10.0, minimum=0.5)
# Telegram: about 30 messages/s per bot and 1/s per chat. One a second under it: the
# limiter spaces grants by Redis's clock, and network jitter must not squeeze 31 sends
# into a strict provider's second (docs/reliability.md).
TELEGRAM_RATE_PER_SECOND = env.number("TELEGRAM_RATE_PER_SECOND", 29.0, minimum=0.1)
TELEGRAM_RATE_PER_CHAT_PER_SECOND = env.number(
    "TELEGRAM_RATE_PER_CHAT_PER_SECOND", 1.0, minimum=0.01
)
# WhatsApp Cloud API (Meta's Graph API).
WHATSAPP_API_BASE_URL = env.url(
    "WHATSAPP_API_BASE_URL", "https://graph.facebook.com/v21.0", schemes=("http", "https")
)
WHATSAPP_TOKEN = env.string("WHATSAPP_TOKEN")
WHATSAPP_PHONE_NUMBER_ID = env.string("WHATSAPP_PHONE_NUMBER_ID")
WHATSAPP_TIMEOUT_SECONDS = env.number("WHATSAPP_TIMEOUT_SECONDS", 10.0, minimum=0.5)
# Cloud API throughput is 80 messages/s per business number by default; one pair of
# numbers may exchange about one message every 6 s before error 131056.
WHATSAPP_RATE_PER_SECOND = env.number("WHATSAPP_RATE_PER_SECOND", 80.0, minimum=0.1)
WHATSAPP_RATE_PER_RECIPIENT_PER_SECOND = env.number(
    "WHATSAPP_RATE_PER_RECIPIENT_PER_SECOND", 0.16, minimum=0.01
)

# SMS through Twilio's REST API.
TWILIO_API_BASE_URL = env.url(
    "TWILIO_API_BASE_URL", "https://api.twilio.com", schemes=("http", "https")
)
TWILIO_ACCOUNT_SID = env.string("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env.string("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env.string("TWILIO_FROM_NUMBER")
TWILIO_MESSAGING_SERVICE_SID = env.string("TWILIO_MESSAGING_SERVICE_SID")
# The public https address of this site, for Twilio's status callbacks; empty: none asked.
PUBLIC_BASE_URL = env.string("PUBLIC_BASE_URL").rstrip("/")
TWILIO_TIMEOUT_SECONDS = env.number("TWILIO_TIMEOUT_SECONDS", 10.0, minimum=0.5)
# A long code sends about 1 segment/s (US); Twilio queues beyond it, we pace instead.
SMS_RATE_PER_SECOND = env.number("SMS_RATE_PER_SECOND", 1.0, minimum=0.01)
SMS_RATE_PER_RECIPIENT_PER_SECOND = env.number(
    "SMS_RATE_PER_RECIPIENT_PER_SECOND", 0.2, minimum=0.01
)

# E-mail through Django's mail framework (SMTP).
EMAIL_HOST = env.string("EMAIL_HOST", "localhost")
EMAIL_PORT = env.integer("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env.string("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env.string("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env.boolean("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env.boolean("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env.integer("EMAIL_TIMEOUT", 10, minimum=1, maximum=300)
DEFAULT_FROM_EMAIL = env.string("DEFAULT_FROM_EMAIL", "care-team@localhost")
# Empty: "A message from your care team" in the patient's language; set, the same for all.
EMAIL_SUBJECT = env.string("EMAIL_SUBJECT", "")
EMAIL_RATE_PER_SECOND = env.number("EMAIL_RATE_PER_SECOND", 10.0, minimum=0.01)

# The order in which a patient's channels are tried when a message names none, after
# the patient's preferred one. The web inbox always reaches them, so it ends the list.
CHANNEL_FALLBACK_ORDER = env.words(
    "CHANNEL_FALLBACK_ORDER", ["telegram", "whatsapp", "sms", "email"]
)
if unknown := set(CHANNEL_FALLBACK_ORDER) - set(CHANNELS):
    raise ImproperlyConfigured(f"CHANNEL_FALLBACK_ORDER names unknown channels: {sorted(unknown)}")

# The language whose templates stand in when none exists in the patient's language.
TEMPLATE_FALLBACK_LANGUAGE = env.string("TEMPLATE_FALLBACK_LANGUAGE", "en").lower()

# Per channel: (messages per second in all, per second to one recipient).
CHANNEL_RATE_LIMITS = {
    "telegram": (TELEGRAM_RATE_PER_SECOND, TELEGRAM_RATE_PER_CHAT_PER_SECOND),
    "whatsapp": (WHATSAPP_RATE_PER_SECOND, WHATSAPP_RATE_PER_RECIPIENT_PER_SECOND),
    "sms": (SMS_RATE_PER_SECOND, SMS_RATE_PER_RECIPIENT_PER_SECOND),
    "email": (EMAIL_RATE_PER_SECOND, EMAIL_RATE_PER_SECOND),
}
# The sandbox records what would have been sent instead of calling the provider, so a
# development stack without a bot token still shows deliveries. Never in production.
CHANNEL_SANDBOX = env.boolean("CHANNEL_SANDBOX", default=DEBUG and not TELEGRAM_BOT_TOKEN)
if CHANNEL_SANDBOX and not DEBUG:
    raise ImproperlyConfigured("CHANNEL_SANDBOX=true is only allowed with DJANGO_DEBUG=true")

# --- The companion's initiative: check-ins (outreach/) ----------------------------------
CHECK_INS_ENABLED = env.boolean("CHECK_INS_ENABLED", True)
CHECK_IN_TICK_SECONDS = env.integer("CHECK_IN_TICK_SECONDS", 15, minimum=1, maximum=300)
# Writing starts this long before a check-in's moment; one not written by the moment plus
# the grace is sent with the fallback template.
CHECK_IN_WRITING_LEAD_SECONDS = env.integer(
    "CHECK_IN_WRITING_LEAD_SECONDS", 120, minimum=0, maximum=3600
)
CHECK_IN_GRACE_SECONDS = env.integer("CHECK_IN_GRACE_SECONDS", 60, minimum=0, maximum=1800)
# Any OpenAI-compatible Chat Completions server (OpenAI, Azure OpenAI, Ollama, vLLM,
# llama.cpp). Empty: no model, every check-in uses the fallback template.
LLM_BASE_URL = env.string("LLM_BASE_URL")
LLM_API_KEY = env.string("LLM_API_KEY")
LLM_MODEL = env.string("LLM_MODEL", "gpt-4o-mini")
LLM_TIMEOUT_SECONDS = env.number("LLM_TIMEOUT_SECONDS", 20.0, minimum=0.5)
LLM_MAX_CONCURRENCY = env.integer("LLM_MAX_CONCURRENCY", 8, minimum=1, maximum=1000)
# Weather for the check-ins: Open-Meteo (no key) unless OPENWEATHER_API_KEY is set.
OPEN_METEO_BASE_URL = env.url(
    "OPEN_METEO_BASE_URL", "https://api.open-meteo.com", schemes=("http", "https")
)
GEOCODING_BASE_URL = env.url(
    "GEOCODING_BASE_URL", "https://geocoding-api.open-meteo.com", schemes=("http", "https")
)
OPENWEATHER_API_KEY = env.string("OPENWEATHER_API_KEY")
OPENWEATHER_BASE_URL = env.url(
    "OPENWEATHER_BASE_URL", "https://api.openweathermap.org", schemes=("http", "https")
)
WEATHER_TIMEOUT_SECONDS = env.number("WEATHER_TIMEOUT_SECONDS", 3.0, minimum=0.5)
# Follow-ups for patients who have gone quiet: after this long without a message, a
# button or an answer from them; at most so many in any 7 days; not within the cooldown
# after any other message from the companion (a check-in, another follow-up).
FOLLOW_UP_ENABLED = env.boolean("FOLLOW_UP_ENABLED", True)
FOLLOW_UP_DEFAULT_DELAY_HOURS = env.number("FOLLOW_UP_DEFAULT_DELAY_HOURS", 48.0, minimum=0.01)
FOLLOW_UP_MAX_PER_USER_PER_WEEK = env.integer(
    "FOLLOW_UP_MAX_PER_USER_PER_WEEK", 2, minimum=0, maximum=50
)
FOLLOW_UP_COOLDOWN_HOURS = env.number("FOLLOW_UP_COOLDOWN_HOURS", 12.0, minimum=0.0)
# A patient who writes within this long of a follow-up counts as having answered it.
FOLLOW_UP_RESPONSE_HOURS = env.number("FOLLOW_UP_RESPONSE_HOURS", 24.0, minimum=0.1)

# --- Flower (companion/flowerconfig.py) ---------------------------------------------------
# Its login, "user:password" (several comma-separated); Flower refuses to start without it
# unless DEBUG is on (docs/security.md, item 6).
FLOWER_BASIC_AUTH = env.words("FLOWER_BASIC_AUTH", [])
for _login in FLOWER_BASIC_AUTH:
    _user, _, _password = _login.partition(":")
    if not _user or not _password:
        raise ImproperlyConfigured("FLOWER_BASIC_AUTH must be user:password (comma-separated)")
    if not DEBUG and len(_password) < 12:
        raise ImproperlyConfigured(
            f"FLOWER_BASIC_AUTH: the password of {_user!r} has fewer than 12 characters"
        )

# --- Running on Kubernetes (deploy/kubernetes/, companion/worker_probes.py) ----------------
# A worker touches this file every WORKER_HEARTBEAT_SECONDS from its own event loop, and
# creates WORKER_READY_FILE once it consumes; the pod's probes read their age and
# presence, without a round trip through the broker. Empty: no file (make run, compose).
WORKER_HEARTBEAT_FILE = env.string("WORKER_HEARTBEAT_FILE")
WORKER_READY_FILE = env.string("WORKER_READY_FILE")
WORKER_HEARTBEAT_SECONDS = env.integer("WORKER_HEARTBEAT_SECONDS", 10, minimum=1, maximum=300)
# Beat touches this file after every tick of its loop (at most 5 s apart), for the
# liveness probe of its pod (companion/beat_scheduler.py). Empty: no file.
BEAT_HEARTBEAT_FILE = env.string("BEAT_HEARTBEAT_FILE")
# Gunicorn's worker processes (companion/gunicorn_conf.py): by default 2 per core plus
# one, gunicorn's own advice. In a container, the core count is the host's: set it from
# the CPU limit (deploy/kubernetes/ does).
WEB_CONCURRENCY = env.integer(
    "WEB_CONCURRENCY", 2 * len(os.sched_getaffinity(0)) + 1, minimum=1, maximum=64
)

# --- Metrics (operations/metrics_*.py; README, *Operating it*) ----------------------------
# The web's /metrics answers only "Authorization: Bearer <METRICS_TOKEN>"; with none set it
# does not exist (404), except with DJANGO_DEBUG on, where it is open.
METRICS_TOKEN = env.string("METRICS_TOKEN")
if METRICS_TOKEN and not DEBUG and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be 32 or more random characters")
# Each Celery worker and Beat serves its metrics on this port (0: no exporter) at this
# address: loopback unless set (0.0.0.0 in a container, behind a NetworkPolicy).
METRICS_PORT = env.integer("METRICS_PORT", 0, minimum=0, maximum=65535)
METRICS_ADDRESS = env.string("METRICS_ADDRESS", "127.0.0.1")
# prometheus-client's multiprocess mode (prefork workers, gunicorn): one directory per node,
# which the node empties of earlier runs at start. prometheus-client reads the variable
# itself; empty: each process keeps its metrics in memory (runserver, Beat, a solo pool).
PROMETHEUS_MULTIPROC_DIR = env.string("PROMETHEUS_MULTIPROC_DIR")

# --- Languages (README, Languages) ------------------------------------------------------
# The languages whose catalogs (locale/) are complete: the care team's pages and what
# patients read. A patient's language outside them reads English; a test fails on any
# message left untranslated.
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("es", "Español"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# --- Attachments: photos, voice notes and documents on messages (scheduling/attachments) ---
# Where their files are kept: "local" (a folder, MEDIA_ROOT) or "s3" (an S3-compatible
# bucket through django-storages and boto3).
ATTACHMENT_STORAGE = env.string("ATTACHMENT_STORAGE", "local").lower()
# The folder for "local". Never served as static files: a view that checks who asks
# serves each file (the web inbox link, or a signed address for Twilio).
MEDIA_ROOT = env.string("MEDIA_ROOT", str(BASE_DIR / "media"))
# For "s3": the bucket, the endpoint of an S3-compatible service (empty: AWS), its region
# and credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, read by boto3 itself when
# empty here).
ATTACHMENT_S3_BUCKET = env.string("ATTACHMENT_S3_BUCKET")
ATTACHMENT_S3_ENDPOINT_URL = env.string("ATTACHMENT_S3_ENDPOINT_URL")
ATTACHMENT_S3_REGION = env.string("ATTACHMENT_S3_REGION")
_attachment_storages = {
    "local": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(Path(MEDIA_ROOT) / "attachments"), "base_url": None},
    },
    "s3": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ATTACHMENT_S3_BUCKET,
            "endpoint_url": ATTACHMENT_S3_ENDPOINT_URL or None,
            "region_name": ATTACHMENT_S3_REGION or None,
            "access_key": env.string("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env.string("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    },
}
if ATTACHMENT_STORAGE not in _attachment_storages:
    raise ImproperlyConfigured("ATTACHMENT_STORAGE must be local or s3")
if ATTACHMENT_STORAGE == "s3" and not ATTACHMENT_S3_BUCKET:
    raise ImproperlyConfigured("ATTACHMENT_STORAGE=s3 needs ATTACHMENT_S3_BUCKET")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": _attachment_storages[ATTACHMENT_STORAGE],
}
# How long the signed address of an attachment works: the one Twilio fetches an MMS from,
# and the link an SMS to a number without MMS carries.
ATTACHMENT_LINK_HOURS = env.number("ATTACHMENT_LINK_HOURS", 72.0, minimum=0.1)
# Attachment files are encrypted at rest (Fernet over the bytes, FIELD_ENCRYPTION_KEYS)
# whenever FIELD_ENCRYPTION_ENABLED is on.

# --- Alerts (operations/alerting.py) -------------------------------------------------
# Rules are evaluated this often (Beat, on the scheduler queue); `manage.py evaluate_alerts`
# runs one evaluation from outside, to catch Beat or the scheduler's workers being down.
ALERT_EVALUATION_SECONDS = env.integer("ALERT_EVALUATION_SECONDS", 60, minimum=1, maximum=3600)
# Where notices go; each target is on when its setting is given.
ALERT_EMAILS = env.words("ALERT_EMAILS", [])
ALERT_EMAIL_FROM = env.string("ALERT_EMAIL_FROM", "alerts@localhost")
ALERT_TELEGRAM_CHAT_ID = env.string("ALERT_TELEGRAM_CHAT_ID")
# The operators' bot; the patients' bot (TELEGRAM_BOT_TOKEN) when empty.
ALERT_TELEGRAM_BOT_TOKEN = env.string("ALERT_TELEGRAM_BOT_TOKEN") or TELEGRAM_BOT_TOKEN
ALERT_WEBHOOK_URL = env.string("ALERT_WEBHOOK_URL")
if ALERT_WEBHOOK_URL:
    ALERT_WEBHOOK_URL = env.url("ALERT_WEBHOOK_URL", "", schemes=("http", "https"))
# Each notice waits at most this long for its target, so a hung target cannot hold
# the evaluation (the others are sent all the same).
ALERT_NOTIFY_TIMEOUT_SECONDS = env.number("ALERT_NOTIFY_TIMEOUT_SECONDS", 5.0, minimum=0.5)
# The share of sends to the provider that failed over the window, per channel and per
# organization, above which an incident opens; fewer sends than the minimum say nothing.
ALERT_FAILURE_RATE = env.number("ALERT_FAILURE_RATE", 0.05)
if not 0 <= ALERT_FAILURE_RATE < 1:
    raise ImproperlyConfigured(f"ALERT_FAILURE_RATE={ALERT_FAILURE_RATE} is not a share below 1")
ALERT_FAILURE_MIN_DELIVERIES = env.integer("ALERT_FAILURE_MIN_DELIVERIES", 20, minimum=1)
# The window of the failure rate and of the lateness percentile (fractions allowed).
ALERT_WINDOW_MINUTES = env.number("ALERT_WINDOW_MINUTES", 15.0, minimum=0.1)
ALERT_BREAKER_OPEN_MINUTES = env.number("ALERT_BREAKER_OPEN_MINUTES", 5.0, minimum=0.1)
# The dispatcher's tick (every SCHEDULER_TICK_SECONDS) older than this: Beat or the
# scheduler's workers are down.
ALERT_BEAT_STALE_SECONDS = env.integer("ALERT_BEAT_STALE_SECONDS", 60, minimum=5)
# A channel's backlog (queued and held deliveries) that has only grown for this long.
ALERT_BACKLOG_GROWING_MINUTES = env.number("ALERT_BACKLOG_GROWING_MINUTES", 10.0, minimum=0.1)
# The 95th percentile of how late deliveries due in the window went out (or still wait).
ALERT_LATENESS_P95_SECONDS = env.number("ALERT_LATENESS_P95_SECONDS", 60.0, minimum=1.0)
# Queues that must have a worker consuming them, and how long one may go without (a
# worker's restart leaves its queues unserved for seconds).
ALERT_NO_WORKER_SECONDS = env.integer("ALERT_NO_WORKER_SECONDS", 120, minimum=0)
_QUEUE_NAMES = [queue.name for queue in CELERY_TASK_QUEUES]
ALERT_WORKER_QUEUES = env.words("ALERT_WORKER_QUEUES", _QUEUE_NAMES)
if unknown := set(ALERT_WORKER_QUEUES) - set(_QUEUE_NAMES):
    raise ImproperlyConfigured(f"ALERT_WORKER_QUEUES names unknown queues: {sorted(unknown)}")

# --- Connection pooler (PgBouncer) -------------------------------------------------------
# "transaction" when DATABASE_URL points at a pooler in transaction mode (PgBouncer's
# pool_mode = transaction), where each transaction of a client may run on another server
# session: Django declares no server-side cursors (.iterator() would read one over
# several transactions), and the tenant wall is set for the request's transaction only,
# with every request one transaction (patients/tenant_wall.py, care_team/tenancy.py).
# Nothing else here keeps session state: no advisory locks, LISTEN/NOTIFY, or prepared
# statements (psycopg's client-side binding cursors, Django's default). Empty: PostgreSQL
# itself, or a pooler in session mode.
DATABASE_POOLER = env.string("DATABASE_POOLER", "").lower()
if DATABASE_POOLER not in {"", "transaction"}:
    raise ImproperlyConfigured(
        f"DATABASE_POOLER={DATABASE_POOLER!r}: use 'transaction' or leave it empty"
    )
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = DATABASE_POOLER == "transaction"

# --- Operating it: backups and reports (operations/) -----------------------------------
# Where `manage.py backup_database` and the scheduled backup put their pg_dump files:
# "filesystem" (BACKUP_DIR) or "s3" (an S3-compatible bucket, through django-storages'
# S3 backend and boto3).
BACKUP_STORAGE = env.string("BACKUP_STORAGE", "filesystem").strip().lower()
if BACKUP_STORAGE not in {"filesystem", "s3"}:
    raise ImproperlyConfigured(f"BACKUP_STORAGE={BACKUP_STORAGE!r}: use filesystem or s3")
# The directory of the filesystem destination; empty: none configured.
BACKUP_DIR = env.string("BACKUP_DIR")
# The bucket, its endpoint (empty: AWS), region, credentials and the key prefix.
BACKUP_S3_BUCKET = env.string("BACKUP_S3_BUCKET")
BACKUP_S3_ENDPOINT_URL = env.string("BACKUP_S3_ENDPOINT_URL")
BACKUP_S3_REGION = env.string("BACKUP_S3_REGION")
BACKUP_S3_ACCESS_KEY_ID = env.string("BACKUP_S3_ACCESS_KEY_ID")
BACKUP_S3_SECRET_ACCESS_KEY = env.string("BACKUP_S3_SECRET_ACCESS_KEY")
BACKUP_S3_PREFIX = env.string("BACKUP_S3_PREFIX", "backups").strip("/")
BACKUP_DESTINATION_CONFIGURED = bool(
    BACKUP_DIR if BACKUP_STORAGE == "filesystem" else BACKUP_S3_BUCKET
)
# The scheduled backup: on by default only where a destination is configured.
BACKUP_ENABLED = env.boolean("BACKUP_ENABLED", default=BACKUP_DESTINATION_CONFIGURED)
if BACKUP_ENABLED and not BACKUP_DESTINATION_CONFIGURED:
    raise ImproperlyConfigured(
        "BACKUP_ENABLED is on but no destination is set: give BACKUP_DIR, or "
        "BACKUP_STORAGE=s3 with BACKUP_S3_BUCKET"
    )
# How often the scheduled backup runs.
BACKUP_INTERVAL_HOURS = env.integer("BACKUP_INTERVAL_HOURS", 24, minimum=1, maximum=24 * 7)
# Rotation after each backup: the newest BACKUP_KEEP_COUNT are kept, and any older than
# BACKUP_KEEP_DAYS is deleted; the newest one is never deleted.
BACKUP_KEEP_COUNT = env.integer("BACKUP_KEEP_COUNT", 7, minimum=1, maximum=1000)
BACKUP_KEEP_DAYS = env.integer("BACKUP_KEEP_DAYS", 30, minimum=1, maximum=3650)
# pg_dump's compression level (-Z), 0 to 9.
BACKUP_COMPRESSION = env.integer("BACKUP_COMPRESSION", 6, minimum=0, maximum=9)
# Where pg_dump and pg_restore are (their major version must match the server's);
# empty: found on PATH.
PG_BIN_DIR = env.string("PG_BIN_DIR")
if BACKUP_STORAGE == "s3":
    _backup_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": BACKUP_S3_BUCKET,
            "endpoint_url": BACKUP_S3_ENDPOINT_URL or None,
            "region_name": BACKUP_S3_REGION or None,
            "access_key": BACKUP_S3_ACCESS_KEY_ID or None,
            "secret_key": BACKUP_S3_SECRET_ACCESS_KEY or None,
            "location": BACKUP_S3_PREFIX,
            "default_acl": "private",
            "file_overwrite": False,
        },
    }
else:
    _backup_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": BACKUP_DIR or str(BASE_DIR / "backups")},
    }
STORAGES["backups"] = _backup_storage
# Each organization's daily report, e-mailed to its admins (operations/report_mail.py).
DAILY_REPORTS_ENABLED = env.boolean("DAILY_REPORTS_ENABLED", default=True)

# --- The system's jobs and data retention (operations/) ----------------------------
# Each kind of record is kept so many days, then deleted by operations.clean_up_old_data
# (0: kept forever). README "Retention" says why each default. Processed inbound updates
# follow INBOUND_REPLAY_KEEP_DAYS (Bot): the replay guard needs them exactly that long.
RETENTION_SENT_DELIVERIES_DAYS = env.integer("RETENTION_SENT_DELIVERIES_DAYS", 365, minimum=0)
RETENTION_INBOX_MESSAGES_DAYS = env.integer("RETENTION_INBOX_MESSAGES_DAYS", 365, minimum=0)
RETENTION_SANDBOX_DAYS = env.integer("RETENTION_SANDBOX_DAYS", 7, minimum=0)
RETENTION_LINK_TOKENS_DAYS = env.integer("RETENTION_LINK_TOKENS_DAYS", 30, minimum=0)
RETENTION_AUDIT_DAYS = env.integer("RETENTION_AUDIT_DAYS", 2190, minimum=0)
RETENTION_JOB_HISTORY_DAYS = env.integer("RETENTION_JOB_HISTORY_DAYS", 30, minimum=0)
# How often the clean-up runs; each run deletes at most RETENTION_BATCH_SIZE rows per
# transaction, pauses between batches, and stops after RETENTION_MAX_SECONDS (under the
# task time limit; the next run goes on).
RETENTION_INTERVAL_SECONDS = env.integer(
    "RETENTION_INTERVAL_SECONDS", 3600, minimum=60, maximum=86_400
)
RETENTION_BATCH_SIZE = env.integer("RETENTION_BATCH_SIZE", 2000, minimum=100, maximum=20_000)
RETENTION_PAUSE_SECONDS = env.number("RETENTION_PAUSE_SECONDS", 0.1)
RETENTION_MAX_SECONDS = env.integer("RETENTION_MAX_SECONDS", 240, minimum=10, maximum=280)
# Custom jobs (operations/job_types.py): modules defining more job types, imported by
# every process at start-up (comma-separated); a failed run is retried after
# JOB_RETRY_BASE_SECONDS, each next retry waiting twice as long, at most
# JOB_RETRY_MAX_SECONDS (under the broker's visibility timeout of an hour).
JOB_TYPE_MODULES = env.words("JOB_TYPE_MODULES", [])
JOB_RETRY_BASE_SECONDS = env.number("JOB_RETRY_BASE_SECONDS", 30.0, minimum=0.1)
JOB_RETRY_MAX_SECONDS = env.number("JOB_RETRY_MAX_SECONDS", 1800.0, minimum=1.0)

# --- Logging: ids only, never message bodies, names or phone numbers ----------------
LOG_LEVEL = env.string("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is not a logging level")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx logs every request URL, and a Telegram URL carries the bot token.
        "httpx": {"level": "WARNING"},
        "aiohttp": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Bot -----------------------------------------------------------------------------
# The patient-facing Telegram bot (channels_app/bot) and inbound WhatsApp and SMS.
# Telegram sends this in X-Telegram-Bot-Api-Secret-Token with every webhook call
# (manage.py set_telegram_webhook registers it); empty: the webhook refuses every call.
TELEGRAM_WEBHOOK_SECRET = env.string("TELEGRAM_WEBHOOK_SECRET")
_secret_chars = TELEGRAM_WEBHOOK_SECRET.replace("_", "").replace("-", "")
if TELEGRAM_WEBHOOK_SECRET and not (
    len(TELEGRAM_WEBHOOK_SECRET) <= 256
    and (_secret_chars == "" or _secret_chars.isalnum())
    and _secret_chars.isascii()
):
    raise ImproperlyConfigured(
        "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
    )
# The bot's @username without the @, for https://t.me/<username>?start=<token> links.
TELEGRAM_BOT_USERNAME = env.string("TELEGRAM_BOT_USERNAME").lstrip("@")
LINK_TOKEN_TTL_HOURS = env.integer("LINK_TOKEN_TTL_HOURS", 72, minimum=1, maximum=24 * 90)
# How long a patient's web inbox link works (patients.inbox_links).
INBOX_LINK_DAYS = env.integer("INBOX_LINK_DAYS", 30, minimum=1, maximum=365)
# Reminders patients set up themselves (/schedule): how many active, how often at most.
PATIENT_REMINDERS_MAX = env.integer("PATIENT_REMINDERS_MAX", 20, minimum=1, maximum=1000)
PATIENT_REMINDER_MIN_INTERVAL_MINUTES = env.integer(
    "PATIENT_REMINDER_MIN_INTERVAL_MINUTES", 60, minimum=1, maximum=7 * 24 * 60
)
# Meta signs each WhatsApp webhook POST with the app secret (X-Hub-Signature-256) and
# checks our endpoint with the verify token once, when it is subscribed.
WHATSAPP_APP_SECRET = env.string("WHATSAPP_APP_SECRET")
WHATSAPP_VERIFY_TOKEN = env.string("WHATSAPP_VERIFY_TOKEN")
# Medication reminders: how long Snooze waits, how often unanswered ones are looked for.
ACK_SNOOZE_MINUTES = env.integer("ACK_SNOOZE_MINUTES", 10, minimum=1, maximum=24 * 60)
ACK_CHECK_SECONDS = env.integer("ACK_CHECK_SECONDS", 60, minimum=5, maximum=3600)
# An inbound update not processed this long after it arrived (its task was lost) is
# queued again by the sweep, up to INBOUND_MAX_ATTEMPTS tries; one never processed loses
# its payload (what the patient wrote) after INBOUND_KEEP_DAYS.
INBOUND_RETRY_AFTER_SECONDS = env.integer("INBOUND_RETRY_AFTER_SECONDS", 60, minimum=5)
INBOUND_MAX_ATTEMPTS = env.integer("INBOUND_MAX_ATTEMPTS", 5, minimum=1, maximum=50)
INBOUND_KEEP_DAYS = env.integer("INBOUND_KEEP_DAYS", 7, minimum=1)
# What remains of a processed update (the provider's id, a few bytes) is kept this long,
# so a signed webhook replayed later is recognised; WhatsApp messages sent longer ago than
# this are ignored, by the timestamp Meta signs with them (docs/security.md, item 19).
INBOUND_REPLAY_KEEP_DAYS = env.integer("INBOUND_REPLAY_KEEP_DAYS", 30, minimum=7)

# --- REST API at /api/scheduler/ (scheduling/api) ------------------------------------
REST_FRAMEWORK = {
    # Token first: an unauthenticated request gets 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: nested lists (contacts, bulk items) have no honest form encoding.
    "DEFAULT_PARSER_CLASSES": ["care_team.api.framework.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "care_team.api.framework.exception_handler",
    # Per user (by token or session) and, for the endpoints open without one, per client
    # address; counted in the shared cache (Redis), so across every web process.
    "DEFAULT_THROTTLE_CLASSES": [
        "care_team.api.throttles.UserThrottle",
        "care_team.api.throttles.AnonThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.rate("API_THROTTLE_USER_RATE", "600/min"),
        "anon": env.rate("API_THROTTLE_ANON_RATE", "60/min"),
        # Probes: kept apart from the anonymous rate, and generous, so that many pods
        # probed from one node's address are never marked unready by a 429.
        "health": env.rate("API_THROTTLE_HEALTH_RATE", "600/min"),
    },
    # The client's address is REMOTE_ADDR unless this many proxies in front of the site
    # append to X-Forwarded-For (then the address the nearest of them saw). Left unset,
    # DRF would believe whatever X-Forwarded-For a client sends.
    "NUM_PROXIES": env.integer("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10),
}
# API tokens are kept hashed (django-rest-knox) and expire; `create_provider --new-token`
# issues one, `--rotate` replaces them all (patients/api_tokens.py).
API_TOKEN_DAYS = env.integer("API_TOKEN_DAYS", 90, minimum=1, maximum=730)
REST_KNOX = {"AUTH_HEADER_PREFIX": "Token", "TOKEN_TTL": timedelta(days=API_TOKEN_DAYS)}
# Inbound webhooks (Telegram, WhatsApp, Twilio), per endpoint and client address. The
# providers send from a few addresses; past the rate they get a 429 and retry later.
WEBHOOK_RATE_PER_ADDRESS = env.rate("WEBHOOK_RATE_PER_ADDRESS", "1200/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "Companion scheduler API",
    "DESCRIPTION": "Patients, scheduled messages, their deliveries and templates, for care "
    "teams. Authenticate with `Authorization: Token <key>` (manage.py create_provider "
    "--new-token).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema for logged-in users and token holders only; the docs pages are behind the
    # login too (care_team/api/docs.py), and load Swagger UI and Redoc from this site.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Separate request and response components, so read-only fields are not asked for.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "care_team.api.framework.document_errors",
    ],
    "ENUM_NAME_OVERRIDES": {
        "MessageStatusEnum": "scheduling.models.MessageStatus",
        "DeliveryStatusEnum": "scheduling.models.DeliveryStatus",
        "AttemptOutcomeEnum": "scheduling.models.AttemptOutcome",
        "ChannelEnum": "patients.models.Channel",
        "ContentFormatEnum": "scheduling.models.ContentFormat",
    },
}
