"""Settings for the teleradiology engine, read from the environment.

Nothing set: a development profile that needs no server (SQLite and a
filesystem Celery broker under ``var/``).  ``DATABASE_URL`` and ``REDIS_URL``
switch to PostgreSQL and Redis with no other change.  ``DJANGO_ENV=production``
refuses to start with development defaults.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import django_stubs_ext
import environ
from csp.constants import NONCE
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
    "knox",  # expiring API tokens (accounts.ApiToken)
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served locally, no CDN
    "guardian",
    "django_htmx",
    # The flow of a study: the network it is read by, the study itself (and
    # its DICOM ingest), routing, the worklist, reporting; audit underneath.
    "audit",
    "accounts",  # sign-in, multi-factor authentication, lockout, API tokens
    "network",
    "studies",
    "ingest",
    "orders",  # HL7 v2 orders and patient updates over MLLP
    "priors",  # relevant priors retrieved from the facility's PACS before the offer
    "routing",
    "worklist",
    "reporting",
    "alerts",
    "turnaround",
    "onboarding",  # a facility's checklist and connection tests for its group admins
    "health",
    "review",
    "simulation",  # draft rule sets replayed over past studies, then published
    "dicomweb",  # DICOMweb over the stored studies (PS3.18)
    "viewer",  # the OHIF image viewer, served prebuilt at /viewer/
    "demo",  # demo data (seed_demo), importing every app above
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Permissions-Policy, and Cache-Control: no-store on responses with patient data.
    "teleradiology.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): a second factor was given in this session.
    "django_otp.middleware.OTPMiddleware",
    # Sessions that still owe a second factor reach only the sign-in pages.
    "accounts.middleware.MfaRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Ends a page session idle for SESSION_IDLE_TIMEOUT seconds (after messages: it
    # leaves one on the sign-in page).
    "teleradiology.middleware.IdleSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a lockout into its answer (accounts.views).
    "axes.middleware.AxesMiddleware",
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
                "teleradiology.keepalive.idle_logoff",
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
    # First: refuses a locked-out user or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
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
# A page session unused for this many seconds ends (0: never); the page warns this
# many seconds before (teleradiology/middleware.py, static/idle-logoff.js).  Requests
# a page sends by itself (polling) do not count as use.  SESSION_COOKIE_AGE stays
# the absolute lifetime.
SESSION_IDLE_TIMEOUT = env.int("SESSION_IDLE_TIMEOUT", default=15 * 60)
SESSION_IDLE_WARNING = env.int("SESSION_IDLE_WARNING", default=2 * 60)
if SESSION_IDLE_TIMEOUT < 0 or SESSION_IDLE_WARNING < 0:
    raise ImproperlyConfigured("SESSION_IDLE_TIMEOUT and SESSION_IDLE_WARNING must be >= 0.")
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# Multi-factor authentication (accounts): required, every signed-in user must give a
# second factor (TOTP, a recovery code or a passkey) before any page, the admin or an
# API token; not required (the demo), only users who enrolled a device are asked.
MFA_REQUIRED = env.bool("MFA_REQUIRED", default=PRODUCTION)
MFA_ISSUER = env.str("MFA_ISSUER", default="Teleradiology")
MFA_RECOVERY_CODES = 10
# Lockout (django-axes): this many failed sign-ins (a wrong password or second-factor
# code) for one username, or from one address, lock it for the cool-off; N lockouts
# of one account or address within an hour alert its group's admins.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = False
# A try during a lockout is refused without extending it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_DISABLE_ACCESS_LOG = True  # sign-ins are in the audit trail
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token"]
# Behind a reverse proxy: how many proxies set X-Forwarded-For (0: REMOTE_ADDR).
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if AXES_IPWARE_PROXY_COUNT else ("REMOTE_ADDR",)
)
LOCKOUT_ALERT_COUNT = env.int("LOCKOUT_ALERT_COUNT", default=3)
OTP_TOTP_ISSUER = MFA_ISSUER
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the admin never shows a device's secret key
# Passkeys (django-otp-webauthn) as a second factor only, never passwordless (every
# sign-in passes the password, the lockout and the audit).  The relying party id is
# the host name users sign in at (never an IP address: browsers refuse it, so the
# demo's passkeys work at http://localhost:8000); plain http only on localhost.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_RP_ID = env.str("WEBAUTHN_RP_ID", default="localhost")
OTP_WEBAUTHN_RP_NAME = MFA_ISSUER
OTP_WEBAUTHN_ALLOWED_ORIGINS: list[str] = env.list(
    "WEBAUTHN_ORIGINS", default=["http://localhost:8000"]
)
# API tokens (django-rest-knox): they expire; "Authorization: Token <key>".
KNOX_TOKEN_MODEL = "accounts.ApiToken"  # noqa: S105 - a model name
# knox's own migrations would create its unused token table (the model is swapped for
# accounts.ApiToken) with a foreign key to users that blocks flushing the database.
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    "TOKEN_TTL": dt.timedelta(hours=env.float("API_TOKEN_TTL_HOURS", default=12.0)),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

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
        "teleradiology.filters.BoundedFilterBackend",  # numbers held to 64 bits
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "teleradiology.api.exception_handler",
    # JSON nested deeper than teleradiology.parsers.MAX_JSON_DEPTH is a 400, not a
    # RecursionError; forms and multipart as DRF's defaults.
    "DEFAULT_PARSER_CLASSES": [
        "teleradiology.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # DRF's browsable API, allowed its templates' style attributes under the CSP.
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "teleradiology.renderers.BrowsableAPIRenderer",
    ],
    # Far above what a reader or an integration sends, well below a script in a loop
    # (teleradiology/throttling.py); 429 with Retry-After beyond.
    "DEFAULT_THROTTLE_CLASSES": [
        "teleradiology.throttling.AnonRateThrottle",
        "teleradiology.throttling.UserRateThrottle",
        "teleradiology.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="50/s"),
        "dicomweb": env.str("API_THROTTLE_DICOMWEB", default="500/s"),
        "sign-in": env.str("API_THROTTLE_SIGN_IN", default="10/min"),
        "claim": env.str("API_THROTTLE_CLAIM", default="60/min"),
        # A facility's connection tests (C-ECHO, test ORU): network I/O to its peers.
        "connection-test": env.str("API_THROTTLE_CONNECTION_TEST", default="20/min"),
    },
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
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "teleradiology.throttling.add_throttled_responses",  # 429 on every operation
    ],
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "studies.states.StudyStatus",
        "CredentialStatusEnum": "network.models.CredentialStatus",
        "PriorityEnum": "network.models.Priority",
        "ReportStatusEnum": "reporting.states.ReportStatus",
        "SignAsEnum": "reporting.states.SignAs",
        "ChecklistItemStatusEnum": "onboarding.selectors.ItemStatus",
        "DeliveryAttemptOutcomeEnum": "reporting.models.DeliveryAttempt.Outcome",
        # The ACK code of a received HL7 message: named so it and the delivery
        # attempts' outcome (both "outcome") do not collide.
        "Hl7MessageOutcomeEnum": "orders.models.Hl7Message.Outcome",
        "PriorFetchStatusEnum": "priors.models.PriorFetch.Status",
        "PriorStudyStatusEnum": "priors.models.PriorStudy.Status",
        "OrderStatusEnum": "studies.models.Order.Status",
        "OrderPatientClassEnum": "studies.models.Order.PatientClass",
    },
    # <id:...> path segments (teleradiology.converters): 64-bit primary keys.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
    },
}

# --- Content-Security-Policy (django-csp) ---------------------------------------
# No inline script or style on our pages: scripts and styles are static files (a
# nonce for what must stay inline).  The viewer's pages send their own policy
# (viewer/views.py); the middleware leaves a response's own header alone.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", NONCE],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    },
}

# --- Celery -----------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# The cache: Redis when configured, so that every web worker shares it (API
# throttle counts, DICOMweb's audit de-duplication); else memory per process.
if REDIS_URL:
    CACHES = {
        "default": {
            # clear() leaves the broker's keys alone (the same Redis database)
            "BACKEND": "teleradiology.cache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "telerad",
        }
    }
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
# Other called AE titles the gateway answers to (e.g. a title senders still use after
# a rename); an association calling any other title is rejected (reason 0x07).
DICOM_AE_TITLE_ALIASES: list[str] = env.list("DICOM_AE_TITLE_ALIASES", default=[])
if not all(0 < len(t.strip()) <= 16 for t in [DICOM_AE_TITLE, *DICOM_AE_TITLE_ALIASES]):
    raise ImproperlyConfigured("DICOM_AE_TITLE and its aliases must be 1-16 characters.")
DICOM_AE_TITLE_ALIASES = [t.strip() for t in DICOM_AE_TITLE_ALIASES]
DICOM_PORT = env.int("DICOM_PORT", default=11112)
# The called AE title a facility's PACS sends retrieved priors to (the C-MOVE
# destination our priors fetch names, and the calling AE title of its queries): the
# gateway files what arrives on it as priors.  Each PACS must know it (its host and
# DICOM_PORT); see docs/dicom-conformance.md.
DICOM_PRIORS_AE_TITLE = env.str("DICOM_PRIORS_AE_TITLE", default="TELERAD_PRIORS").strip()
if not 0 < len(DICOM_PRIORS_AE_TITLE) <= 16:
    raise ImproperlyConfigured("DICOM_PRIORS_AE_TITLE must be 1-16 characters.")
# The interface the DICOM listener binds: loopback unless named; in production it
# must be named (the listener refuses to start otherwise; 0.0.0.0 means every one).
DICOM_LISTEN_HOST = env.str("DICOM_LISTEN_HOST", default="" if PRODUCTION else "127.0.0.1")
# The listener's database connections carry this PostgreSQL application_name, so
# operators can find them in pg_stat_activity.
DICOM_LISTENER_DB_APPLICATION_NAME = env.str(
    "DICOM_LISTENER_DB_APPLICATION_NAME", default="teleradiology-dicom-listener"
)
# Largest PDU we accept; a peer announcing more is cut off (bounded memory).
DICOM_MAX_PDU_BYTES = env.int("DICOM_MAX_PDU_BYTES", default=262144)
DICOM_TLS_CERT = env.str("DICOM_TLS_CERT", default="")
DICOM_TLS_KEY = env.str("DICOM_TLS_KEY", default="")
DICOM_TLS_CA = env.str("DICOM_TLS_CA", default="")  # set to require client certificates
# --- HL7 v2 orders in (MLLP; the `orders` app) ----------------------------------
HL7_PORT = env.int("HL7_PORT", default=2575)
# Loopback unless named; in production it must be named, as for DICOM.
HL7_LISTEN_HOST = env.str("HL7_LISTEN_HOST", default="" if PRODUCTION else "127.0.0.1")
HL7_LISTENER_DB_APPLICATION_NAME = env.str(
    "HL7_LISTENER_DB_APPLICATION_NAME", default="teleradiology-hl7-listener"
)
HL7_TLS_CERT = env.str("HL7_TLS_CERT", default="")
HL7_TLS_KEY = env.str("HL7_TLS_KEY", default="")
HL7_TLS_CA = env.str("HL7_TLS_CA", default="")  # set to require client certificates
# A larger message is refused (AR) and kept cut to this size with the reason.
HL7_MAX_MESSAGE_BYTES = env.int("HL7_MAX_MESSAGE_BYTES", default=1 << 20)
# A connection silent this long (between or inside frames) is closed.
HL7_READ_TIMEOUT_SECONDS = env.float("HL7_READ_TIMEOUT_SECONDS", default=60.0)
# Connections served at once; more are closed at once (the sender retries).
HL7_MAX_CONNECTIONS = env.int("HL7_MAX_CONNECTIONS", default=64)
if HL7_MAX_MESSAGE_BYTES < 1024 or HL7_READ_TIMEOUT_SECONDS <= 0 or HL7_MAX_CONNECTIONS < 1:
    raise ImproperlyConfigured("HL7_* listener limits must be positive (a message 1 KiB+).")
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
# Weekly rotas: concrete shifts are generated this many days ahead, by beat every
# ROTA_SWEEP_SECONDS (and at once when a rota or leave is saved); a reader's pause
# that ran out is cleared by beat every PAUSE_SWEEP_SECONDS (eligibility already
# reads a pause past its end as over).
ROTA_HORIZON_DAYS = env.int("ROTA_HORIZON_DAYS", default=14)
if not 1 <= ROTA_HORIZON_DAYS <= 366:
    raise ImproperlyConfigured("ROTA_HORIZON_DAYS must be between 1 and 366.")
ROTA_SWEEP_SECONDS = env.float("ROTA_SWEEP_SECONDS", default=3600.0)
PAUSE_SWEEP_SECONDS = env.float("PAUSE_SWEEP_SECONDS", default=60.0)
# A routing task routes its own study and up to this many minus one other ready
# studies waiting for a decision, in one transaction (1 routes one study a task).
ROUTING_BATCH_SIZE = env.int("ROUTING_BATCH_SIZE", default=32)
# A ready study of a facility with a PACS waits this long for its relevant priors
# (STAT, and every other priority) before it is offered anyway, "priors pending".
PRIORS_WAIT_STAT_SECONDS = env.float("PRIORS_WAIT_STAT_SECONDS", default=30.0)
PRIORS_WAIT_SECONDS = env.float("PRIORS_WAIT_SECONDS", default=120.0)
# A fetch of priors the PACS refused or did not answer is tried again after
# PRIORS_RETRY_SECONDS, doubling each time (at most PRIORS_RETRY_MAX_SECONDS apart),
# PRIORS_FETCH_MAX_ATTEMPTS times in all; an attempt still running after
# PRIORS_ATTEMPT_LEASE_SECONDS is taken as lost (its worker died) and run again.
# Beat looks for due fetches every PRIORS_SWEEP_SECONDS.
PRIORS_RETRY_SECONDS = env.float("PRIORS_RETRY_SECONDS", default=10.0)
PRIORS_RETRY_MAX_SECONDS = env.float("PRIORS_RETRY_MAX_SECONDS", default=300.0)
PRIORS_FETCH_MAX_ATTEMPTS = env.int("PRIORS_FETCH_MAX_ATTEMPTS", default=5)
PRIORS_ATTEMPT_LEASE_SECONDS = env.float("PRIORS_ATTEMPT_LEASE_SECONDS", default=660.0)
PRIORS_SWEEP_SECONDS = env.float("PRIORS_SWEEP_SECONDS", default=10.0)
# Seconds to wait for the PACS to accept an association or answer a query, and
# between two answers of a C-MOVE (one per instance moved).
PRIORS_PACS_TIMEOUT_SECONDS = env.float("PRIORS_PACS_TIMEOUT_SECONDS", default=20.0)
PRIORS_MOVE_TIMEOUT_SECONDS = env.float("PRIORS_MOVE_TIMEOUT_SECONDS", default=120.0)
# Tasks a worker runs on one database connection before Celery closes it.
WORKER_DB_REUSE_TASKS = env.int("WORKER_DB_REUSE_TASKS", default=10000)
# SLA warnings: how often beat looks for studies nearing or past their due time,
# and at which fractions of the target (receipt to due) an unclaimed study warns.
# Report delivery to facilities (HL7 v2 over MLLP, FHIR over HTTPS): retry waits
# double from the base up to the cap; a down endpoint is retried, never dropped.
REPORT_DELIVERY_RETRY_BASE_SECONDS = env.float("REPORT_DELIVERY_RETRY_BASE_SECONDS", default=30.0)
REPORT_DELIVERY_RETRY_MAX_SECONDS = env.float("REPORT_DELIVERY_RETRY_MAX_SECONDS", default=3600.0)
# Tries before a result message that keeps failing (no answer, AE/CE, HTTP 5xx) is
# given up and the facility's staff and the group's admins are alerted: 8 tries span
# about an hour with the default backoff (30 s doubling).  AR/CR and HTTP 4xx fail at once.
REPORT_DELIVERY_MAX_ATTEMPTS = env.int("REPORT_DELIVERY_MAX_ATTEMPTS", default=8)
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
    "loggers": {
        "pynetdicom": {"level": env.str("PYNETDICOM_LOG_LEVEL", default="WARNING")},
        # django-axes: failures and lockouts (WARNING), not a line per start and sign-in.
        "axes": {"level": "WARNING"},
    },
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
