"""Factories for the registry. Users get roles through the real role groups."""

from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm

from models_mgmt.choices import ROLE_OBJECT_PERMS, DatasetSource, JobStatus, VersionStatus
from models_mgmt.engine.timeframes import bar_timestamp
from models_mgmt.models import AIModel, Bar, Dataset, ModelVersion, TrainingJob
from models_mgmt.services.roles import roles_ensure


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-123456")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(roles_ensure()[extracted])
        self.save()


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset
        django_get_or_create = ("name",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"ds{n}")
    symbol = "TEST"
    source = DatasetSource.UPLOAD
    bar_count = 0

    @factory.post_generation
    def bars(self, create, extracted, **kwargs):
        if not extracted or self.bar_count:  # get_or_create found it with its bars
            return
        start = dt.date(2020, 1, 1)
        Bar.objects.bulk_create(
            Bar(
                dataset=self,
                timestamp=bar_timestamp(start + dt.timedelta(days=i)),
                open=100 + i,
                high=101 + i,
                low=99 + i,
                close=100.5 + i,
                volume=1000,
            )
            for i in range(extracted)
        )
        self.bar_count = extracted
        self.first_bar_at = bar_timestamp(start)
        self.last_bar_at = bar_timestamp(start + dt.timedelta(days=extracted - 1))
        self.save()


class AIModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AIModel

    name = factory.Sequence(lambda n: f"model-{n}")
    family = "multitask-mlp"
    owner = factory.SubFactory(UserFactory)
    default_dataset = factory.SubFactory(DatasetFactory, name="sample", bars=300)


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    model = factory.SubFactory(AIModelFactory)
    version = factory.Sequence(lambda n: f"v1.{n}.0")
    status = VersionStatus.READY
    accuracy = 0.55
    response_time_ms = 1.5
    performance_metrics = factory.LazyFunction(
        lambda: {"patternRecognition": 0.6, "signalAccuracy": 0.52, "riskAssessment": 0.53, "overallScore": 0.55}
    )


class TrainingJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrainingJob

    model = factory.SubFactory(AIModelFactory)
    dataset = factory.SubFactory(DatasetFactory, name="sample", bars=300)
    status = JobStatus.QUEUED
    config = factory.LazyFunction(dict)


def grant(user_or_group, model: AIModel, role: str) -> None:
    for codename in ROLE_OBJECT_PERMS[role]:
        assign_perm(f"models_mgmt.{codename}", user_or_group, model)
