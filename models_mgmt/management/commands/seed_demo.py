"""Demo data for a fresh install; running it again changes nothing."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from models_mgmt import services
from models_mgmt.choices import Role
from models_mgmt.engine.bars import BUILTIN_DATASETS
from models_mgmt.models import AIModel
from models_mgmt.services.roles import roles_ensure
from models_mgmt.services.training_config import training_config_resolve
from models_mgmt.training.worker import training_job_execute

DEMO_MODELS = (
    ("techanal-signal", "sp500", "Signal, risk and breakout model for the S&P 500."),
    ("techanal-nasdaq", "nasdaq", "Signal, risk and breakout model for the NASDAQ Composite."),
)
FIRST_VERSION_WINDOW = ("1999-01-01", "2012-12-31")
DEMO_USERS = (  # username, role, staff
    ("demo", Role.MAINTAINER, True),
    ("quant", Role.TRAINER, False),
    ("analyst", Role.VIEWER, False),
)


class Command(BaseCommand):
    help = "Create roles, demo logins, the built-in datasets and demo models (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--password",
            default=os.environ.get("DEMO_PASSWORD", "techanal-demo"),
            help="password of the demo logins (env DEMO_PASSWORD; default techanal-demo)",
        )
        parser.add_argument(
            "--epochs", type=int, default=20, help="epochs of each demo model's first version (0: do not train)"
        )

    def handle(self, *args: Any, password: str, epochs: int, **options: Any) -> None:
        with transaction.atomic():
            groups = roles_ensure()
            self._users(groups, password)
        for name in BUILTIN_DATASETS:
            dataset = services.dataset_import_builtin(name=name)
            self.stdout.write(
                f"dataset {dataset.name}: {dataset.bar_count} bars {dataset.first_date}..{dataset.last_date}"
            )
        owner = get_user_model().objects.get(username="demo")  # fresh instance: no stale permission cache
        for name, dataset_name, description in DEMO_MODELS:
            model = AIModel.objects.filter(name=name).first()
            if model is None:
                model = services.ai_model_create(
                    actor=owner,
                    name=name,
                    family="multitask-mlp",
                    base_model="multitask-mlp (from scratch)",
                    description=description,
                    default_dataset=services.dataset_import_builtin(name=dataset_name),
                )
            for role, group in groups.items():
                services.ai_model_access_set(actor=owner, model=model, grantee=group, role=role)
            self.stdout.write(f"model {model.name}: shared with the viewer, trainer and maintainer roles")
            if epochs and not model.versions.exists():
                self._train_first_version(owner, model, epochs)
        self.stdout.write(
            self.style.SUCCESS(
                f"logins (password '{password}'): "
                "demo (maintainer), quant (trainer), analyst (viewer), admin (superuser)"
            )
        )

    def _train_first_version(self, owner: User, model: AIModel, epochs: int) -> None:
        """v1.0.0 trained on 1999-2012 through the normal job path, then activated, so that a
        fine-tune on the later years (2013-2018) or on the other index has a base to start from."""
        window = [dt.date.fromisoformat(day) for day in FIRST_VERSION_WINDOW]
        resolved = training_config_resolve(
            model=model, fields={"epochs": epochs, "startDate": window[0], "endDate": window[1]}
        )
        job = services.training_job_start(
            actor=owner, model=model, config=resolved.config, dataset=resolved.dataset, base_version=None
        )
        outcome = training_job_execute(job_id=job.pk)
        if outcome.status != "succeeded" or outcome.version is None:
            job.refresh_from_db()
            self.stderr.write(f"training {model.name} v1.0.0 ended {outcome.status}: {job.error}")
            return
        version = services.model_version_activate(actor=owner, model=model, version=outcome.version)
        self.stdout.write(
            f"model {model.name}: {version.version} trained on {FIRST_VERSION_WINDOW[0]}..{FIRST_VERSION_WINDOW[1]} "
            f"and activated (accuracy {version.accuracy:.3f}, baseline {version.baselines['overallScore']:.3f})"
        )

    def _users(self, groups: dict[str, Group], password: str) -> None:
        User = get_user_model()
        for username, role, staff in DEMO_USERS:
            user, made = User.objects.get_or_create(username=username, defaults={"is_staff": staff})
            if made:
                user.set_password(password)
                user.save()
            user.groups.add(groups[role])
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@localhost", password)
