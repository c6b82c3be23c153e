"""Settings for the teleradiology engine, read from the environment.

Nothing set: a development profile that needs no server (SQLite and a
filesystem Celery broker under ``var/``).  ``DATABASE_URL`` and ``REDIS_URL``
switch to PostgreSQL and Redis with no other change.  ``DJANGO_ENV=production``
refuses to start with development defaults.
"""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets generic Django classes be subscripted at runtime (ModelAdmin[Model]).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is convenient for developers; the process environment wins.
env_file = BASE_DIR / ".env"
if env_file.exists():
    env.read_env(str(env_file), overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
PRODUCTION = DJANGO_ENV == "production"

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served locally, no CDN
    "guardian",
    "django_htmx",
    # The flow of a study: the network it is read by, the study itself (and
    # its DICOM ingest), routing, the worklist, reporting; audit underneath.
    "audit",
    "network",
    "studies",
    "ingest",
    "routing",
    "worklist",
    "reporting",
    "alerts",
    "turnaround",
    "health",
    "review",
    "dicomweb",  # DICOMweb over the stored studies (PS3.18)
    "viewer",  # the OHIF image viewer, served prebuilt at /viewer/
    "demo",  # demo data (seed_demo), importing every app above
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "teleradiology.urls"
WSGI_APPLICATION = "teleradiology.wsgi.application"
ASGI_APPLICATION = "teleradiology.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "teleradiology" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "teleradiology.context_processors.nav",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
_SQLITE_PATH = VAR_DIR / "teleradiology.sqlite3"
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{_SQLITE_PATH}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The test database is a file (not :memory:) so that a real Celery worker
    # process started by the integration tests sees the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {
            # WAL and a busy timeout let the web process, the worker and beat
            # share one SQLite file without "database is locked" errors.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side parameter binding lets PostgreSQL keep prepared plans for the
    # statements a process repeats (routing runs the same few per decision).
    if env.bool("DB_SERVER_SIDE_BINDING", default=False):
        DATABASES["default"].setdefault("OPTIONS", {})
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env.int(
            "DB_PREPARE_THRESHOLD", default=5
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; PHI is never public
GUARDIAN_RAISE_403 = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "teleradiology" / "static"]
# The OHIF viewer as `make install` prepared it for /viewer/ (viewer/build.py copies
# node_modules/@ohif/app/dist here and rewrites it for the sub-path).
VIEWER_DIR = Path(env.str("VIEWER_DIR", default=str(VAR_DIR / "viewer")))

# --- API --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "teleradiology.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "teleradiology.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Teleradiology worklist and case-distribution API",
    "DESCRIPTION": (
        "Reading network, studies, routing, worklist and reporting. "
        "Every read of patient data is permission-checked and audited."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "studies.states.StudyStatus",
        "CredentialStatusEnum": "network.models.CredentialStatus",
        "PriorityEnum": "network.models.Priority",
        "ReportStatusEnum": "reporting.states.ReportStatus",
        "SignAsEnum": "reporting.states.SignAs",
    },
}

# --- Celery -----------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_FS_BROKER_DIR = VAR_DIR / "celery-broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # acks_late tasks must come back if a worker dies: shorter than the
        # default hour so a killed worker's work is redelivered promptly.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    }
else:
    # kombu's filesystem transport: a real worker and beat, no server.
    for sub in ("queue", "processed", "control"):
        (CELERY_FS_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FS_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_FS_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_FS_BROKER_DIR / "processed"),
        # Broadcast (ping, inspect) exchanges; kombu's default is ./control.
        "control_folder": str(CELERY_FS_BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = False  # opted into per task, only where the task is idempotent
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# --- Mail ---------------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if not PRODUCTION
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="teleradiology@localhost")

# --- DICOM ------------------------------------------------------------------
DICOM_STORAGE_ROOT = Path(env.str("DICOM_STORAGE_ROOT", default=str(VAR_DIR / "dicom")))
DICOM_AE_TITLE = env.str("DICOM_AE_TITLE", default="TELERAD")
DICOM_PORT = env.int("DICOM_PORT", default=11112)
# Largest PDU we accept; a peer announcing more is cut off (bounded memory).
DICOM_MAX_PDU_BYTES = env.int("DICOM_MAX_PDU_BYTES", default=262144)
DICOM_TLS_CERT = env.str("DICOM_TLS_CERT", default="")
DICOM_TLS_KEY = env.str("DICOM_TLS_KEY", default="")
DICOM_TLS_CA = env.str("DICOM_TLS_CA", default="")  # set to require client certificates
# Largest object accepted (a facility may set its own); larger ones are refused
# (0xC250) and recorded.  Private elements beyond the second limit are refused too.
INGEST_MAX_OBJECT_BYTES = env.int("INGEST_MAX_OBJECT_BYTES", default=2 << 30)
INGEST_MAX_PRIVATE_ELEMENT_BYTES = env.int("INGEST_MAX_PRIVATE_ELEMENT_BYTES", default=16 << 20)
# The largest STOW-RS request body (each part is also held to its facility's
# object limit); larger requests are answered 413 before they are read.
DICOMWEB_STOW_MAX_BYTES = env.int("DICOMWEB_STOW_MAX_BYTES", default=4 << 30)
# Facility storage quotas: usage measured this often; admins alerted at this fraction.
INGEST_USAGE_SWEEP_SECONDS = env.float("INGEST_USAGE_SWEEP_SECONDS", default=60.0)
INGEST_QUOTA_WARNING_FRACTION = env.float("INGEST_QUOTA_WARNING_FRACTION", default=0.9)
# Stored files no row names (a filing that failed midway) are moved to quarantine by
# a sweep this often; only files older than the minimum age are judged.
INGEST_ORPHAN_SWEEP_SECONDS = env.float("INGEST_ORPHAN_SWEEP_SECONDS", default=3600.0)
INGEST_ORPHAN_MIN_AGE_SECONDS = env.float("INGEST_ORPHAN_MIN_AGE_SECONDS", default=3600.0)
# Partial files of aborted transfers older than this are removed by the staging sweep.
INGEST_STAGING_MAX_AGE_SECONDS = env.int("INGEST_STAGING_MAX_AGE_SECONDS", default=300)
# A study is ready when no instance has arrived for this long.
STUDY_QUIET_SECONDS = env.float("STUDY_QUIET_SECONDS", default=10.0)
STUDY_READY_SWEEP_SECONDS = env.float("STUDY_READY_SWEEP_SECONDS", default=2.0)
# A claim with no report activity for this long (minutes, per priority) is released.
STALE_CLAIM_MINUTES = {
    1: env.int("STALE_CLAIM_MINUTES_STAT", default=20),
    2: env.int("STALE_CLAIM_MINUTES_URGENT", default=60),
    3: env.int("STALE_CLAIM_MINUTES_ROUTINE", default=240),
}
# How often beat sweeps for due escalations, lost routing tasks and stale offers.
ROUTING_SWEEP_SECONDS = env.float("ROUTING_SWEEP_SECONDS", default=5.0)
# Open offers whose reader went off shift or lost a credential are withdrawn by
# a sweep of its own, so the escalation sweep stays a small indexed read.
OFFER_ELIGIBILITY_SWEEP_SECONDS = env.float("OFFER_ELIGIBILITY_SWEEP_SECONDS", default=30.0)
# A routing task routes its own study and up to this many minus one other ready
# studies waiting for a decision, in one transaction (1 routes one study a task).
ROUTING_BATCH_SIZE = env.int("ROUTING_BATCH_SIZE", default=32)
# Tasks a worker runs on one database connection before Celery closes it.
WORKER_DB_REUSE_TASKS = env.int("WORKER_DB_REUSE_TASKS", default=10000)
# SLA warnings: how often beat looks for studies nearing or past their due time,
# and at which fractions of the target (receipt to due) an unclaimed study warns.
# Report delivery to facilities (HL7 v2 over MLLP, FHIR over HTTPS): retry waits
# double from the base up to the cap; a down endpoint is retried, never dropped.
REPORT_DELIVERY_RETRY_BASE_SECONDS = env.float("REPORT_DELIVERY_RETRY_BASE_SECONDS", default=30.0)
REPORT_DELIVERY_RETRY_MAX_SECONDS = env.float("REPORT_DELIVERY_RETRY_MAX_SECONDS", default=3600.0)
HL7_SENDING_APPLICATION = env.str("HL7_SENDING_APPLICATION", default="TELERAD")
SLA_WARNING_SWEEP_SECONDS = env.float("SLA_WARNING_SWEEP_SECONDS", default=30.0)
SLA_WARNING_FRACTIONS: tuple[float, ...] = tuple(
    sorted({float(x) for x in env.list("SLA_WARNING_FRACTIONS", default=["0.5", "0.8"])})
)
if not all(0 < fraction < 1 for fraction in SLA_WARNING_FRACTIONS):
    raise ImproperlyConfigured("SLA_WARNING_FRACTIONS must be fractions between 0 and 1.")
# Critical results: a finding marked critical with no read-back-confirmed communication
# record after this many minutes alerts the group's admins (once), checked by beat.
CRITICAL_RESULT_COMMUNICATION_MINUTES = env.int("CRITICAL_RESULT_COMMUNICATION_MINUTES", default=30)
if CRITICAL_RESULT_COMMUNICATION_MINUTES < 1:
    raise ImproperlyConfigured("CRITICAL_RESULT_COMMUNICATION_MINUTES must be at least 1.")
CRITICAL_OVERDUE_SWEEP_SECONDS = env.float("CRITICAL_OVERDUE_SWEEP_SECONDS", default=60.0)
# Second opinions and peer reviews: a claimed case unanswered for this long is offered
# to the eligible readers again, and the reader and the group's admins are told.
REVIEW_STALE_CLAIM_HOURS = env.float("REVIEW_STALE_CLAIM_HOURS", default=24.0)
# Operations page: the window of a reader's "recent" weighted work, how many
# at-risk / unroutable studies it lists, and how often it refreshes itself.
OPERATIONS_WORK_HOURS = env.float("OPERATIONS_WORK_HOURS", default=8.0)
OPERATIONS_LIST_LIMIT = env.int("OPERATIONS_LIST_LIMIT", default=100)
OPERATIONS_REFRESH_SECONDS = env.int("OPERATIONS_REFRESH_SECONDS", default=5)
if OPERATIONS_WORK_HOURS <= 0 or OPERATIONS_LIST_LIMIT < 1 or OPERATIONS_REFRESH_SECONDS < 1:
    raise ImproperlyConfigured("OPERATIONS_* settings must be positive.")
# /metrics: a scraper sends "Authorization: Bearer <METRICS_TOKEN>"; unset, only a
# signed-in superuser or a user with turnaround.view_metrics may read it.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The turnaround histogram covers the studies finalised in this trailing window.
METRICS_TURNAROUND_WINDOW_HOURS = env.float("METRICS_TURNAROUND_WINDOW_HOURS", default=24.0)

# --- Logging ------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # pynetdicom logs every C-STORE at INFO: too chatty (and slow) for a gateway.
    "loggers": {"pynetdicom": {"level": env.str("PYNETDICOM_LOG_LEVEL", default="WARNING")}},
}

# --- Production guard -------------------------------------------------------
if PRODUCTION:
    problems = []
    if DEBUG:
        problems.append("DEBUG must be off")
    if SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY must be set to a random value of 50+ characters")
    if not ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS must be set")
    if not env.str("DATABASE_URL", default=""):
        problems.append("DATABASE_URL must be set (SQLite is for development only)")
    if not REDIS_URL:
        problems.append("REDIS_URL must be set (the filesystem broker is for development only)")
    if problems:
        raise ImproperlyConfigured("Refusing to start in production: " + "; ".join(problems))

    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
