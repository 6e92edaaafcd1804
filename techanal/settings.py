"""TechAnal settings: one module, driven by environment variables (django-environ).

Embedded default: SQLite under var/, django-q2's ORM broker, local-memory cache and channel layer.
Production: DATABASE_URL=postgres://..., REDIS_URL=redis://... (cache, throttles, channel layer
and the django-q2 broker all move to Redis).
"""

import socket
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from models_mgmt.engine.placement import DEVICES  # plain Python: the device names a config may give

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

INSECURE_DEFAULT_SECRET_KEY = "django-insecure-techanal-development-key-do-not-use-in-production"

env = environ.Env()
# `make run` keeps this installation's SECRET_KEY in .env; ENV_FILE points elsewhere.
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_DEFAULT_SECRET_KEY)
if not DEBUG and SECRET_KEY == INSECURE_DEFAULT_SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is the insecure default while DEBUG is off. Set SECRET_KEY in the environment "
        "(or DEBUG=true for local development)."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORT = env.int("PORT", default=5500)

# --- The seed's product switches and training defaults -------------------------------------
MODEL_TRAINING_ENABLED = env.bool("MODEL_TRAINING_ENABLED", default=True)
MODEL_VERSIONING_ENABLED = env.bool("MODEL_VERSIONING_ENABLED", default=True)
MODEL_DRIFT_DETECTION_ENABLED = env.bool("MODEL_DRIFT_DETECTION_ENABLED", default=True)
DEFAULT_TRAINING_EPOCHS = env.int("DEFAULT_TRAINING_EPOCHS", default=100)
DEFAULT_LEARNING_RATE = env.float("DEFAULT_LEARNING_RATE", default=0.001)
DEFAULT_BATCH_SIZE = env.int("DEFAULT_BATCH_SIZE", default=64)
DEFAULT_VALIDATION_SPLIT = env.float("DEFAULT_VALIDATION_SPLIT", default=0.2)
DEFAULT_EARLY_STOPPING_PATIENCE = env.int("DEFAULT_EARLY_STOPPING_PATIENCE", default=10)
DEFAULT_DATASET = env.str("DEFAULT_DATASET", default="sp500")
# The `device` of a multitask-mlp FineTuningConfig that names none (auto: the claiming worker's GPU
# when it has one, else its CPU). Tests set "cpu", so a GPU host runs the suite as CI does.
DEFAULT_TRAINING_DEVICE = env.str("DEFAULT_TRAINING_DEVICE", default="auto")
if DEFAULT_TRAINING_DEVICE not in DEVICES:
    # Every start that names no device would be refused with a message about a field it never sent.
    raise ImproperlyConfigured(
        f"DEFAULT_TRAINING_DEVICE={DEFAULT_TRAINING_DEVICE!r} must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}."
    )
ARTIFACTS_DIR = Path(env.str("ARTIFACTS_DIR", default=str(VAR_DIR / "artifacts")))
CSV_UPLOAD_MAX_BYTES = env.int("CSV_UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)
# llm-lora delivery and serving (docs/llm.md): empty = no Ollama server, adapters are downloaded instead.
OLLAMA_URL = env.str("OLLAMA_URL", default="")
OLLAMA_TIMEOUT_S = env.float("OLLAMA_TIMEOUT_S", default=600.0)

# No "daphne" here: it would load Twisted (~26 MB) into every uvicorn process for `runserver`'s sake.
# The product serves through uvicorn (bin/serve); `manage.py runserver` is Django's own (no websockets).
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally: there is no CDN at run time
    "guardian",
    "django_q",
    "channels",
    "models_mgmt",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files from the web server without a separate one
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "models_mgmt.permissions.PermissionScopeMiddleware",  # one guardian checker per user per request
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "techanal.urls"
WSGI_APPLICATION = "techanal.wsgi.application"
ASGI_APPLICATION = "techanal.asgi.application"

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
            # The dashboard's filters live with the dashboard (Django looks only in models_mgmt/templatetags/).
            "libraries": {"dashboard_format": "models_mgmt.dashboard.templatetags.dashboard_format"},
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
# An empty DATABASE_URL means the embedded default, like an unset one.
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'techanal.sqlite3'}"
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
# Hyperparameter studies on SQLite: Optuna's journal file (on PostgreSQL: its RDB storage in schema `optuna`).
OPTUNA_JOURNAL_PATH = Path(env.str("OPTUNA_JOURNAL_PATH", default=str(VAR_DIR / "optuna" / "journal.log")))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several writers (web processes, qcluster workers) share the file: WAL lets readers run beside a
    # writer, IMMEDIATE takes the write lock at BEGIN so two transactions never deadlock upgrading
    # a read lock, and the busy timeout makes a writer wait instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    # Under ASGI each sync request runs in its own thread, so persistent connections (CONN_MAX_AGE)
    # pile up, one per thread (measured: PostgreSQL's "too many clients" under 16 clients). A pool per
    # web process bounds them instead: a request borrows a connection and returns it when it ends;
    # one that finds all DB_POOL_MAX_SIZE in use waits up to DB_POOL_TIMEOUT s (then a 500). The
    # training worker (`manage.py qcluster`) keeps one connection per thread, closed per task: its
    # connections are bounded by its process count, and django-q2 forks worker processes from a
    # parent that has used the database, where a child would share the parent's pooled sockets.
    # docs/configuration.md has the arithmetic against PostgreSQL's max_connections.
    if env.bool("DB_POOL", default=sys.argv[1:2] != ["qcluster"]):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=4),
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (optional): cache + throttles, channel layer, django-q2 broker -----------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
        "monitoring": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
    }
    # redis-py 8 gives every connection a 5 s socket timeout, the same as channels_redis's blocking
    # BZPOPMIN: a consumer that waits 5 s for a message (a queued job, a worker warming up) raced the
    # two and its socket died with "Timeout reading from Redis" (1011 to the client). Reads may take
    # longer than the blocking pop; a dead server is still noticed.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        },
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "techanal"},
        # django-q2 keeps cluster statistics in a cache; a database cache lets the web process see
        # the worker's statistics (a local-memory cache is private to each process).
        "qcluster": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "qcluster_cache"},
        # Drift reports computed by a worker (scheduled checks, after an activation or new bars) are
        # served by the web process from here: a database cache is shared by both processes.
        "monitoring": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "monitoring_cache"},
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

TRAINING_JOB_TIMEOUT_S = env.int("TRAINING_JOB_TIMEOUT_S", default=6 * 3600)
# A running job whose heartbeat is older than this (or whose worker process is gone) is reaped.
TRAINING_HEARTBEAT_TIMEOUT_S = env.int("TRAINING_HEARTBEAT_TIMEOUT_S", default=120)
TRAINING_MAX_ATTEMPTS = env.int("TRAINING_MAX_ATTEMPTS", default=3)
# A job with `distributed` settings: how often torchrun restarts its group after a rank dies (the
# group resumes from the job's checkpoint) before the job fails with errorCode distributed_error.
DISTRIBUTED_MAX_RESTARTS = env.int("DISTRIBUTED_MAX_RESTARTS", default=1)

# --- Cost of jobs ------------------------------------------------------------------------------
# The default price card: used while no PriceCard exists in the database (admin adds versions).
# Decimals (money): a value that is not a number stops the start, not a job's costing.
COST_CPU_HOUR = Decimal(env.str("COST_CPU_HOUR", default="0.05"))
COST_GPU_HOUR = Decimal(env.str("COST_GPU_HOUR", default="2.50"))
COST_CURRENCY = env.str("COST_CURRENCY", default="USD")
# A worker process pays its one-time costs (torch, pandas, onnxruntime imports, the first ONNX
# export) when it starts, so its first job's progress feed never goes silent for them.
TRAINING_WORKER_WARMUP = env.bool("TRAINING_WORKER_WARMUP", default=True)
Q_CLUSTER = {
    "name": "techanal",
    "workers": env.int("TRAINING_WORKERS", default=2),
    "recycle": 50,
    # A task is killed after `timeout`; it is handed out again only after `retry`. Keeping
    # timeout < retry means a long job is never run twice at once.
    "timeout": TRAINING_JOB_TIMEOUT_S,
    "retry": TRAINING_JOB_TIMEOUT_S + 600,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "label": "Training queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["cache"] = "qcluster"

# --- Worker hosts and clusters (docs/configuration.md "Worker hosts and clusters") -----------
# The host part of a running job's `worker` ("host:pid"): the reaper checks the pids of its own
# host's jobs and judges every other host's jobs by their heartbeat alone. Unique per host.
WORKER_HOST = env.str("WORKER_HOST", default="") or socket.gethostname()
# django-q2 cluster names (one queue each): training jobs go to TRAINING_CLUSTER, monitoring work
# and the product's schedules to MONITORING_CLUSTER. A qcluster process serves the cluster that
# its Q_CLUSTER_NAME names (unset: Q_CLUSTER["name"]). Every process needs the same two values.
TRAINING_CLUSTER = env.str("TRAINING_CLUSTER", default=Q_CLUSTER["name"])
MONITORING_CLUSTER = env.str("MONITORING_CLUSTER", default=Q_CLUSTER["name"])
# django-q2 1.11.1 pops ALT_CLUSTERS (KeyError at start) whenever Q_CLUSTER_NAME names another
# cluster; the entries could override Q_CLUSTER's options for that cluster (none do).
Q_CLUSTER["ALT_CLUSTERS"] = {name: {} for name in {TRAINING_CLUSTER, MONITORING_CLUSTER} - {Q_CLUSTER["name"]}}
_serves = env.str("Q_CLUSTER_NAME", default="")  # django-q2 reads it from the environment itself
if _serves and _serves not in {Q_CLUSTER["name"], TRAINING_CLUSTER, MONITORING_CLUSTER}:
    # A typo (or a host missing TRAINING_CLUSTER) would serve a queue nobody sends work to.
    raise ImproperlyConfigured(
        f"Q_CLUSTER_NAME={_serves!r} is neither TRAINING_CLUSTER ({TRAINING_CLUSTER!r}), MONITORING_CLUSTER "
        f"({MONITORING_CLUSTER!r}) nor the default cluster ({Q_CLUSTER['name']!r}): set the same TRAINING_CLUSTER "
        "and MONITORING_CLUSTER on every process."
    )

# --- Auth ------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row, anonymous requests see nothing
GUARDIAN_RAISE_403 = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "models_mgmt.api.authentication.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "models_mgmt.api.pagination.Pagination",
    "DEFAULT_THROTTLE_CLASSES": [
        # DRF's throttles, atomic per client for simultaneous requests (models_mgmt/api/throttling.py)
        "models_mgmt.api.throttling.AnonRateThrottle",
        "models_mgmt.api.throttling.UserRateThrottle",
        "models_mgmt.api.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="1200/min"),
        "training": env.str("THROTTLE_TRAINING", default="30/hour"),
        "auth": env.str("THROTTLE_AUTH", default="30/min"),
    },
    "EXCEPTION_HANDLER": "models_mgmt.api.errors.exception_handler",
    # Throttles identify anonymous clients by address; trust X-Forwarded-For only from known proxies.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TechAnal Model Fine-tuning Pipeline API",
    "DESCRIPTION": "Model registry, fine-tuning jobs, versions and monitoring for TechAnal.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["models_mgmt.api.schema.seed_paths"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "models_mgmt.api.schema.unsupported_media_type",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "models_mgmt.choices.JobStatus",
        "VersionStatusEnum": "models_mgmt.choices.VersionStatus",
        "HealthStatusEnum": ["ok", "degraded"],
    },
}

# --- Security headers (TLS-related ones are for deployments behind HTTPS) -------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request until collectstatic has run
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Monitoring ---
# Serving, live accuracy, drift and alerts (README "Monitoring"). Drift thresholds: a feature
# drifts when its PSI reaches MONITORING_PSI_ALERT and its (autocorrelation-aware) KS p-value is
# below MONITORING_KS_PVALUE; the window drifts when MONITORING_DRIFT_FEATURE_SHARE of them do.
MONITORING_PSI_WARN = env.float("MONITORING_PSI_WARN", default=0.1)
MONITORING_PSI_ALERT = env.float("MONITORING_PSI_ALERT", default=0.25)
MONITORING_KS_PVALUE = env.float("MONITORING_KS_PVALUE", default=0.01)
MONITORING_DRIFT_FEATURE_SHARE = env.float("MONITORING_DRIFT_FEATURE_SHARE", default=0.15)
MONITORING_PERFORMANCE_ALPHA = env.float("MONITORING_PERFORMANCE_ALPHA", default=0.05)
MONITORING_MIN_SAMPLES = env.int("MONITORING_MIN_SAMPLES", default=30)
MONITORING_DRIFT_WINDOW_BARS = env.int("MONITORING_DRIFT_WINDOW_BARS", default=120)
# Hysteresis: an alert opens after N consecutive reports over a threshold, clears after M under.
MONITORING_ALERT_RAISE_AFTER = env.int("MONITORING_ALERT_RAISE_AFTER", default=2)
MONITORING_ALERT_CLEAR_AFTER = env.int("MONITORING_ALERT_CLEAR_AFTER", default=3)
MONITORING_CHECK_MINUTES = env.int("MONITORING_CHECK_MINUTES", default=60)
MONITORING_RESOLVE_MINUTES = env.int("MONITORING_RESOLVE_MINUTES", default=5)
# How often the schedule evaluates the guardrail policies (they also run after each bar append).
GUARDRAIL_CHECK_MINUTES = env.int("GUARDRAIL_CHECK_MINUTES", default=15)
MONITORING_PREDICT_MAX_BARS = env.int("MONITORING_PREDICT_MAX_BARS", default=1000)
# A drift report's data and prediction sections are cached per version, window and state of the
# dataset's bars (new bars or another active version make a new key); entries expire after this.
MONITORING_CACHE_SECONDS = env.int("MONITORING_CACHE_SECONDS", default=24 * 3600)
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_SECRET = env.str("ALERT_WEBHOOK_SECRET", default="")
ALERT_WEBHOOK_TIMEOUT_S = env.float("ALERT_WEBHOOK_TIMEOUT_S", default=3.0)

# --- Dashboard ---
# Server-rendered tabs at /model-management/ behind a session login (README "Dashboard").
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/model-management/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# The dashboard ships its scripts as static files (no inline scripts), so nothing here needs
# 'unsafe-inline'. Cookies stay same-site; the session is what the websocket feed authenticates.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
