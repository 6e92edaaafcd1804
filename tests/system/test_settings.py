"""Settings come from the environment; production refuses an insecure default key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.live import django_in_a_process

ROOT = Path(__file__).resolve().parents[2]


def settings_check(**env: str) -> subprocess.CompletedProcess[str]:
    return django_in_a_process(
        "import json; from django.conf import settings as s;"
        "print(json.dumps([s.DEBUG, s.DATABASES['default']['ENGINE'], s.DATABASES['default'].get('OPTIONS', {}),"
        " s.DEFAULT_TRAINING_EPOCHS, s.DEFAULT_LEARNING_RATE, s.MODEL_TRAINING_ENABLED, s.Q_CLUSTER.get('orm'),"
        " s.CACHES['default']['BACKEND'], s.CHANNEL_LAYERS['default']['BACKEND']]))",
        settings_module="techanal.settings",
        drop=("SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL"),
        **env,
    )


def test_debug_off_with_the_default_secret_key_refuses_to_start():
    result = settings_check(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_embedded_default_is_sqlite_for_concurrent_writers_without_redis():
    import json

    result = settings_check(
        DEBUG="false",
        SECRET_KEY="x" * 50,
        DEFAULT_TRAINING_EPOCHS="12",
        DEFAULT_LEARNING_RATE="0.05",
        MODEL_TRAINING_ENABLED="false",
    )
    assert result.returncode == 0, result.stderr
    debug, engine, options, epochs, lr, enabled, orm, cache, layer = json.loads(result.stdout)
    assert (debug, engine) == (False, "django.db.backends.sqlite3")
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]
    assert options["timeout"] >= 5
    assert (epochs, lr, enabled) == (12, 0.05, False)
    assert orm == "default"
    assert cache.endswith("LocMemCache") and layer.endswith("InMemoryChannelLayer")


def test_redis_url_moves_cache_layer_and_broker_to_redis():
    import json

    result = settings_check(
        SECRET_KEY="x" * 50, REDIS_URL="redis://127.0.0.1:6379/3", DATABASE_URL="postgres://u@h:5432/d"
    )
    assert result.returncode == 0, result.stderr
    _, engine, _, _, _, _, orm, cache, layer = json.loads(result.stdout)
    assert engine == "django.db.backends.postgresql"
    assert orm is None
    assert cache.endswith("RedisCache") and layer.endswith("RedisChannelLayer")


def test_the_default_training_device_comes_from_the_environment_and_a_bad_one_refuses_to_start():
    code = "import django; django.setup(); from django.conf import settings as s; print(s.DEFAULT_TRAINING_DEVICE)"
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")}
    env.pop("DEFAULT_TRAINING_DEVICE", None)
    env.update(DJANGO_SETTINGS_MODULE="techanal.settings", ENV_FILE="/nonexistent/.env", DEBUG="true")
    for value, expected in ((None, "auto"), ("cuda", "cuda"), ("cpu", "cpu")):
        run_env = env if value is None else {**env, "DEFAULT_TRAINING_DEVICE": value}
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and result.stdout.strip() == expected, result.stderr
    result = settings_check(DEBUG="true", DEFAULT_TRAINING_DEVICE="gpu")
    assert result.returncode != 0 and "DEFAULT_TRAINING_DEVICE='gpu' must be auto, cpu or cuda" in result.stderr
