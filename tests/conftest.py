from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from models_mgmt.choices import Role
from tests.factories import AIModelFactory, UserFactory, grant

pytest_plugins = ["tests.llm_base"]  # the tiny local base model of the llm-lora tests


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Throttle counters and cached drift reports live in caches; each test starts with none."""
    for alias in ("default", "monitoring"):
        caches[alias].clear()
    yield
    for alias in ("default", "monitoring"):
        caches[alias].clear()


def bearer(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def api():
    """An API client authenticated as the given user with a real JWT."""
    return bearer


@pytest.fixture
def owner(db):
    return UserFactory(role=Role.MAINTAINER)


@pytest.fixture
def ai_model(owner):
    """A model owned by a maintainer who holds every object permission on it."""
    model = AIModelFactory(name="llama3.1:8b", owner=owner)
    grant(owner, model, Role.MAINTAINER)
    return model


@pytest.fixture
def requires_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
