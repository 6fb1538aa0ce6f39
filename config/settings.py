"""Django settings: everything that varies between machines comes from the environment
(see ``.env.example``), read through :mod:`config.env`."""

import ipaddress
import os
import sys
from datetime import timedelta
from decimal import Decimal

from environs import validate

from config.env import BASE_DIR, env, without_credentials

STATE_DIR = env.path("STATE_DIR", BASE_DIR / ".state")
DEBUG = env.bool("DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY", "dev-insecure-secret-key-change-me" if DEBUG else None)
if not DEBUG and (not SECRET_KEY or SECRET_KEY.startswith("dev-insecure")):
    raise RuntimeError("SECRET_KEY must be set to a real secret when DEBUG is off")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
PUBLIC_URL = env.str("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [PUBLIC_URL])
VERSION = "1.0.0"

# daphne makes `manage.py runserver` an ASGI server (websockets included); its app
# installs the twisted reactor on import (half a second), which no other process needs:
# they run under granian, Celery or the bridge.
RUNSERVER = ["daphne"] if sys.argv[1:2] == ["runserver"] else []
INSTALLED_APPS = [
    *RUNSERVER,
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally: /api/v1/docs works offline
    "django_htmx",
    "channels",
    "portal",
    "billing",
    "compute",
    "pairing",
    "sail",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.api.middleware.ApiMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None
AUTH_USER_MODEL = "portal.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "settings"
LOGOUT_REDIRECT_URL = "landing"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database: Postgres when DATABASE_URL is set, SQLite (WAL) in the state dir otherwise.
DATABASES = {
    "default": env.dj_db_url(
        "DATABASE_URL",
        f"sqlite:///{STATE_DIR / 'db.sqlite3'}",
        conn_max_age=env.int("DB_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that server processes started by the tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(STATE_DIR / "test.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif env.int("DB_POOL_SIZE", 0) > 0:
    # Under ASGI every request runs its sync code in a thread of its own, so a persistent
    # connection is opened per request; a process-wide psycopg pool reuses them instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 1, "max_size": env.int("DB_POOL_SIZE"), "timeout": 10}
    }
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # the pool checks what it lends
else:
    # A connection kept between requests is checked before its first use in the next
    # one: one that died with a Postgres restart is replaced, not used (and failed).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The job path's statements are prepared once per Postgres connection (core.prepared);
# off behind a connection pooler in transaction mode that does not keep them.
DB_PREPARED_STATEMENTS = env.bool("DB_PREPARED_STATEMENTS", True)
if DB_PREPARED_STATEMENTS and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # psycopg prepares nothing on a connection without a threshold; this one is never
    # reached by Django's own (client-side bound) queries, only core.prepared asks.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1
# Async connections per web process (Postgres): the API's fast lane submits jobs on them.
DB_ASYNC_POOL_SIZE = env.int("DB_ASYNC_POOL_SIZE", 4)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads per web process that run sync views, middleware included (config/asgi.py).
WEB_THREADS = env.int("WEB_THREADS", 4)
# Threads per web process for async views (SSE, chat completions): each waits on its
# view's coroutine, a non-streaming completion until its job ends (config/asgi.py).
WEB_WAITING_THREADS = env.int("WEB_WAITING_THREADS", 64)

# --- Redis: cache, Celery broker, Channels layer, rate limits.
REDIS_URL = env.str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
}
# A consumer waits for its events with BZPOPMIN, 5 s at a time (channels_redis'
# brpop_timeout); redis-py 8 gives up on a read after 5 s by default (socket_timeout), so
# every idle websocket died in a race between the two, with "TimeoutError: Timeout reading
# from ..." (channels_redis#422). The read has to outlast the blocking pop.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}
# Celery's Django fixup closes every database connection before and after each task (a
# new Postgres session per task, its prepared statements lost); this number of tasks is
# never reached, and config.celery applies Django's own rule (CONN_MAX_AGE, health checks)
# around each task instead.
CELERY_DB_REUSE_MAX = 2**62
CELERY_BEAT_SCHEDULE: dict = {
    "market-snapshot": {"task": "billing.tasks.snapshot_market_rates", "schedule": 300.0},
    "settle-ended-jobs": {"task": "billing.tasks.settle_ended_jobs", "schedule": 60.0},
    "flush-key-requests": {"task": "portal.tasks.flush_key_requests", "schedule": 60.0},
}

# --- NATS (the Sail).
# One server's URL, or a cluster's (comma-separated): every process reconnects to a
# surviving server by itself (sail.client.servers).
NATS_URL = env.str("NATS_URL", "nats://127.0.0.1:4222")
# What Islands are told to connect to; never the internal URL's credentials.
NATS_PUBLIC_URL = env.str("NATS_PUBLIC_URL", "") or ",".join(
    without_credentials(url.strip()) for url in NATS_URL.split(",") if url.strip()
)
# Copies of each JetStream stream kept by a cluster (1 on one server; 3 on a three-node
# cluster), and the size limits of the streams that hold what Islands send and get.
SAIL_STREAM_REPLICAS = env.int("SAIL_STREAM_REPLICAS", 1, validate=validate.Range(1, 5))
SAIL_ISLANDS_MAX_MB = env.int("SAIL_ISLANDS_MAX_MB", 1024, validate=validate.Range(1))
SAIL_JOB_EVENTS_MAX_MB = env.int("SAIL_JOB_EVENTS_MAX_MB", 4096, validate=validate.Range(1))
SAIL_JOBS_MAX_MB = env.int("SAIL_JOBS_MAX_MB", 1024, validate=validate.Range(1))
# The coordinator's keys on the Sail derive from it (sail.keys); make run and make test
# keep one in STATE_DIR/sail_secret, docker-compose requires it.
SAIL_SECRET = env.str("SAIL_SECRET", "")
# How long the credentials the auth callout gives an Island last: it authenticates again
# then (a revoked Island is also disconnected at once: pairing.identities).
SAIL_CREDENTIAL_SECONDS = env.int("SAIL_CREDENTIAL_SECONDS", 3600)
# New connections per minute per address from keys that no Island is paired with.
SAIL_UNPAIRED_CONNECTS_PER_IP = env.int("SAIL_UNPAIRED_CONNECTS_PER_IP", 30)
# Pairing requests per minute per key (or, for field Islands, per host_id).
SAIL_PAIRING_REQUESTS_PER_MINUTE = env.int("SAIL_PAIRING_REQUESTS_PER_MINUTE", 10)
# An Island is offline once its last heartbeat is older than this (3 missed beats).
HEARTBEAT_OFFLINE_SECONDS = env.int("HEARTBEAT_OFFLINE_SECONDS", 30)
# Islands liveness and karma (compute/services/islands.py, karma.py; sail/bridge.py).
LIVENESS_SWEEP_SECONDS = env.float("LIVENESS_SWEEP_SECONDS", 5.0)
DISCONNECT_PENALTY_AFTER_SECONDS = env.int("DISCONNECT_PENALTY_AFTER_SECONDS", 600)
DISCONNECT_KARMA_PENALTY = env.int("DISCONNECT_KARMA_PENALTY", 1)
KARMA_MONETIZATION_THRESHOLD = env.int("KARMA_MONETIZATION_THRESHOLD", 10)
SAIL_BATCH_SIZE = env.int("SAIL_BATCH_SIZE", 1000)  # messages per Celery task at most
SAIL_BATCH_WAIT_SECONDS = env.float("SAIL_BATCH_WAIT_SECONDS", 0.2)  # then sent anyway
# The same for job events (status, output, ...): a job's end is what its client waits for.
SAIL_JOB_EVENTS_WAIT_SECONDS = env.float("SAIL_JOB_EVENTS_WAIT_SECONDS", 0.01)
# Memory of the JOB_UPDATES stream (client events, a replay buffer): oldest dropped first.
JOB_UPDATES_MAX_MB = env.int("JOB_UPDATES_MAX_MB", 512)
CELERY_BEAT_SCHEDULE["forget-unpaired-keys"] = {
    "task": "pairing.tasks.forget_unpaired_keys",
    "schedule": 600.0,
}
CELERY_BEAT_SCHEDULE["sweep-liveness"] = {
    "task": "compute.tasks.sweep_liveness",
    "schedule": LIVENESS_SWEEP_SECONDS,
}

# --- Accounts.
SESSION_COOKIE_AGE = int(timedelta(days=30).total_seconds())
# Sessions in the database by the hash of their key only (portal.sessions).
SESSION_ENGINE = "portal.sessions"
CELERY_BEAT_SCHEDULE["clear-expired-sessions"] = {
    "task": "portal.clear_expired_sessions",
    "schedule": 3600.0,
}
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", PUBLIC_URL.startswith("https://"))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
MAGIC_LINK_TTL = timedelta(minutes=15)
# Failed password logins (the portal's and the admin's) in any 15 minutes
# (portal/attempts.py): from one address for one email, from one address, and for one
# email from everywhere (much higher: a stranger must not lock the owner out).
LOGIN_FAILURE_WINDOW_SECONDS = 15 * 60
LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP = env.int("LOGIN_MAX_FAILURES_PER_EMAIL_AND_IP", 10)
LOGIN_MAX_FAILURES_PER_IP = env.int("LOGIN_MAX_FAILURES_PER_IP", 50)
LOGIN_MAX_FAILURES_PER_EMAIL = env.int("LOGIN_MAX_FAILURES_PER_EMAIL", 200)
STARTING_CREDITS = env.decimal("STARTING_CREDITS", Decimal("10000"))
LOW_CREDITS_THRESHOLD = 10
PLATFORM_FEE_RATE = env.decimal(
    "PLATFORM_FEE_RATE", Decimal("0.10")
)  # share of each job kept by the platform
PASSWORD_HASHERS = env.list(
    "PASSWORD_HASHERS",
    [
        "django.contrib.auth.hashers.MD5PasswordHasher",  # the first one hashes new passwords
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    if env.bool("FAST_PASSWORD_HASHER", False)
    else ["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sign-in links and password resets: EMAIL_URL (smtp://user:password@host:587/?tls=True),
# or an EMAIL_BACKEND chosen on purpose (make run sets the console one, which prints them
# in the worker's log). With DEBUG off, neither is a start-up error: links must not end
# up in a log by default.
CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
if env.str("EMAIL_URL", ""):
    vars().update(env.dj_email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", CONSOLE_EMAIL_BACKEND if DEBUG else "")
    if not EMAIL_BACKEND:
        raise RuntimeError(
            "Email is not configured: set EMAIL_URL (e.g. "
            "smtp://user:password@mail.example.com:587/?tls=True), or, to print sign-in "
            f"links and password resets in the worker's log on purpose, EMAIL_BACKEND="
            f"{CONSOLE_EMAIL_BACKEND}"
        )
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "Archipelago <noreply@localhost>")

# --- Public API.
API_RATE_LIMIT = env.int("API_RATE_LIMIT", 100)  # requests per minute per key
API_ANON_RATE_LIMIT = env.int("API_ANON_RATE_LIMIT", 300)  # per minute per IP, no key
# Web processes (the Procfile's granian workers). While Redis is away each one limits on
# its own, to its share of each limit (core.counters.Fallback).
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", 2)
# How long a web process trusts its copy of an API key. A revoked key is refused at once
# everywhere (a Redis marker, portal.api.throttling); this bounds how long a deactivated
# account's keys keep working.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", 30.0)
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.auth.ApiKeyAuthentication",
        "portal.api.auth.PortalSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["portal.api.throttling.RedisRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "portal.api.negotiation.ContentNegotiation",
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "portal.api.schema.Schema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Archipelago coordinator API",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "ENFORCE_NON_BLANK_FIELDS": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "compute.models.Job.Status",
        "IslandStatusEnum": "compute.models.Island.Status",
        "JobQueueReasonEnum": "compute.models.Job.QueueReason",
    },
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "compute.api_schema.add_plain_view_paths",
        "portal.api.schema.add_error_responses",
    ],
}

# --- Pairing (pairing/): code lifetime and the brute-force limits (see pairing/limits.py).
PAIRING_CODE_TTL = timedelta(minutes=env.int("PAIRING_CODE_TTL_MINUTES", 10))
# Failures in any hour (sliding windows).
PAIRING_MAX_FAILURES_PER_USER = env.int("PAIRING_MAX_FAILURES_PER_USER", 10)
PAIRING_MAX_FAILURES_PER_IP = env.int("PAIRING_MAX_FAILURES_PER_IP", 30)  # per address or /64
PAIRING_MAX_FAILURES_TOTAL = env.int("PAIRING_MAX_FAILURES_TOTAL", 1000)
PAIRING_MAX_ACCOUNTS_PER_CODE = env.int("PAIRING_MAX_ACCOUNTS_PER_CODE", 3)
PAIRING_CLAIMS_PER_IP = env.int("PAIRING_CLAIMS_PER_IP", 20)  # mobile claims per minute
MOBILE_TOKEN_TTL = timedelta(days=env.int("MOBILE_TOKEN_TTL_DAYS", 30))

# --- Jobs, placement and dispatch (compute/services/jobs.py, placement.py, dispatch.py).
JOB_CONCURRENT_LIMIT = env.int("JOB_CONCURRENT_LIMIT", 10)  # non-final jobs per account
# Images in job inputs (ocr-text): bytes once decoded and pixels, checked at submission.
# POST /jobs alone takes a body that large (base64 and the JSON around it).
JOB_IMAGE_MAX_BYTES = env.int("JOB_IMAGE_MAX_BYTES", 8 * 1024 * 1024)
JOB_IMAGE_MAX_PIXELS = env.int("JOB_IMAGE_MAX_PIXELS", 16_000_000)
JOB_SUBMIT_MAX_BODY = JOB_IMAGE_MAX_BYTES * 4 // 3 + 64 * 1024
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", 60)  # first lease of an assignment
# An assignment its Island has not acknowledged (``started``) after this is offered again,
# to the same Island while it heartbeats (compute.services.delivery).
JOB_ACK_TIMEOUT_SECONDS = env.float("JOB_ACK_TIMEOUT_SECONDS", 3.0)
JOB_MAX_LEASE_EXTENSION_SECONDS = env.int("JOB_MAX_LEASE_EXTENSION_SECONDS", 300)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", 3)  # Islands tried before a job fails
# Karma an Island loses at once per failed job and per timed-out job (0 turns it off).
KARMA_FAILURE_PENALTY = env.int("KARMA_FAILURE_PENALTY", env.int("JOB_FAILURE_KARMA_PENALTY", 1))
KARMA_TIMEOUT_PENALTY = env.int("KARMA_TIMEOUT_PENALTY", KARMA_FAILURE_PENALTY)
IDEMPOTENCY_TTL_SECONDS = env.int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600)
# How long a job waits for an Island before it ends (timeout, its hold released), unless
# its submission asks for another limit (queue_timeout_seconds, up to a day).
JOB_QUEUE_TIMEOUT_MAX_SECONDS = 24 * 3600
JOB_QUEUE_TIMEOUT_SECONDS = env.int(
    "JOB_QUEUE_TIMEOUT_SECONDS", 300, validate=validate.Range(1, JOB_QUEUE_TIMEOUT_MAX_SECONDS)
)
# SSE (compute/streaming.py): open streams per account, and the keep-alive comment period.
STREAM_CONCURRENT_LIMIT = env.int("STREAM_CONCURRENT_LIMIT", 5)
SSE_HEARTBEAT_SECONDS = env.float("SSE_HEARTBEAT_SECONDS", 15.0)
# Websockets one account may hold open (the pages' live updates); more are refused.
WEBSOCKETS_PER_USER = env.int("WEBSOCKETS_PER_USER", 20)
PLACEMENT_REGION = env.str("PLACEMENT_REGION", "")  # preferred region of jobs without one
PLACEMENT_REFRESH_SECONDS = env.float("PLACEMENT_REFRESH_SECONDS", 1.0)
PLACEMENT_FULL_RELOAD_SECONDS = env.float("PLACEMENT_FULL_RELOAD_SECONDS", 60.0)
PLACEMENT_REFRESH_IN_BACKGROUND = env.bool("PLACEMENT_REFRESH_IN_BACKGROUND", True)
CELERY_BEAT_SCHEDULE.update(
    {
        "dispatch-queued-jobs": {"task": "compute.dispatch_queued", "schedule": 2.0},
        "sweep-running-jobs": {"task": "compute.sweep_jobs", "schedule": 5.0},
    }
)
# Beat sends each periodic task with its period: it runs once per period however many
# beats send it (core.ticks), so that a second beat (or a restarted one) is harmless.
for _entry in CELERY_BEAT_SCHEDULE.values():
    _entry["kwargs"] = {"tick": float(_entry["schedule"])}

# --- Metrics (core/metrics.py): every process counts into files of this folder, which
# the web process sums at /metrics. Set before any process starts (the launcher empties
# it), and the same for all the processes of a machine (or of a shared volume).
METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(STATE_DIR / "metrics")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR
os.makedirs(METRICS_DIR, exist_ok=True)
# Who may read /metrics: a bearer token, or a client address in these networks. Neither
# set: nobody.
METRICS_TOKEN = env.str("METRICS_TOKEN", "")
_networks: list[str] = env.list("METRICS_ALLOWED_NETWORKS", [])
try:
    METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network(n.strip(), strict=False) for n in _networks]
except ValueError as exc:
    raise RuntimeError(f"METRICS_ALLOWED_NETWORKS: {exc}") from exc

# --- Static files.
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = STATE_DIR / "staticfiles"
# Serve from the source folders too, so pages are styled without a collectstatic step
# (the run command and the test servers start straight from the checkout).
WHITENOISE_USE_FINDERS = True
# Files served at the site's root: /favicon.ico, which browsers ask for on every page
# that names no icon (the admin, the API's documents).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    # Django's own handler for its loggers prints them a second time under DEBUG (without
    # time or level); ours, on the root logger, has them once.
    "loggers": {"django": {"handlers": [], "level": "INFO"}, "django.server": {"level": "WARNING"}},
}
