"""Test settings: the product's settings with a throwaway key and a fast password hasher.

DATABASE_URL chooses the database as in production: unset is SQLite, postgres://... is PostgreSQL.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")

from techanal.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ARTIFACTS_DIR = VAR_DIR / "test-artifacts"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
