"""Test settings: the product's settings with a throwaway key and a fast password hasher.

DATABASE_URL chooses the database as in production: unset is SQLite, postgres://... is PostgreSQL.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")

from techanal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The CPU, as on CI, even on a machine with a GPU (tests that want a GPU name the device).
DEFAULT_TRAINING_DEVICE = "cpu"
if not os.environ.get("OPTUNA_JOURNAL_PATH"):  # a live cluster's workers share the test's journal (tests/jobs)
    OPTUNA_JOURNAL_PATH = VAR_DIR / f"test-optuna-{os.getpid()}.log"  # noqa: F405
ARTIFACTS_DIR = Path(os.environ.get("ARTIFACTS_DIR", VAR_DIR / "test-artifacts"))  # noqa: F405
# Tests render pages without running collectstatic first.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
# Each test starts with an empty drift-report cache (tests/conftest.py clears it): local memory,
# where the product shares a database (or Redis) cache between the web process and the workers.
CACHES = {**CACHES, "monitoring": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mon"}}  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # type: ignore[index]  # noqa: F405

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # One file per test run, so two runs on one machine never share (and corrupt) a test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}  # noqa: F405

if "pytest" in sys.modules:
    # The test process itself runs without the web processes' connection pool: tests race threads
    # that each keep their connection until the test closes it (Django's thread-per-connection
    # model), and with the pool's 4 connections the fifth thread waits out DB_POOL_TIMEOUT (measured:
    # tests/monitoring/test_serving.py's concurrent requests fail with PoolTimeout). The servers the
    # tests start (tests/live.py) keep the product's default, pool on in the web server and off in
    # qcluster; tests/system/test_db_pool.py checks the pool's bound on one.
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)  # noqa: F405
