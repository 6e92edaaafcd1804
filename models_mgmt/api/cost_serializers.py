"""The cost of jobs on the wire: one job's figures and price, and sums over several jobs.

Money is a decimal string (never a float); a sum keeps one amount per currency, since a newer price
card may change the currency.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from models_mgmt.models import JobCost, TrainingJob
from models_mgmt.selectors import CostTotal, job_cost_of


class JobCostSerializer(serializers.ModelSerializer):
    wallSeconds = serializers.FloatField(source="wall_seconds")
    cpuSeconds = serializers.FloatField(source="cpu_seconds", help_text="the worker process and its children")
    gpuSeconds = serializers.FloatField(source="gpu_seconds")
    peakRssBytes = serializers.IntegerField(source="peak_rss_bytes")
    unitKind = serializers.CharField(source="unit_kind", help_text='"samples" (samples x epochs) or "tokens"')
    amount = serializers.DecimalField(max_digits=14, decimal_places=6)
    cpuHour = serializers.DecimalField(source="cpu_hour", max_digits=12, decimal_places=4)
    gpuHour = serializers.DecimalField(source="gpu_hour", max_digits=12, decimal_places=4)
    priceCard = serializers.IntegerField(source="price_card_id", allow_null=True, help_text="null: the settings")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = JobCost
        fields = [
            "wallSeconds", "cpuSeconds", "gpuSeconds", "peakRssBytes", "units", "unitKind", "amount", "currency",
            "cpuHour", "gpuHour", "priceCard", "final", "updatedAt",
        ]  # fmt: skip
        read_only_fields = fields


def job_cost_data(job: TrainingJob) -> dict[str, Any] | None:
    """The job's cost; None for a job that never started (no query: only a claimed job is costed)."""
    if job.started_at is None:
        return None
    cost = job_cost_of(job)
    return None if cost is None else dict(JobCostSerializer(cost).data)


@extend_schema_field(JobCostSerializer(allow_null=True))
class JobCostField(serializers.Field):
    """A job's cost (null: it never ran); `source` is the job ("*": the object serialized)."""

    def __init__(self, source: str = "*", **kwargs: Any) -> None:
        super().__init__(source=source, read_only=True, allow_null=True, **kwargs)

    def to_representation(self, value: TrainingJob) -> dict[str, Any] | None:
        return job_cost_data(value)


class CostTotalSerializer(serializers.Serializer):
    jobs = serializers.IntegerField(help_text="jobs costed (jobs that never ran cost nothing)")
    wallSeconds = serializers.FloatField(source="wall_seconds")
    cpuSeconds = serializers.FloatField(source="cpu_seconds")
    gpuSeconds = serializers.FloatField(source="gpu_seconds")
    amounts = serializers.DictField(
        child=serializers.DecimalField(max_digits=20, decimal_places=6), help_text="currency -> amount"
    )


def cost_total_data(total: CostTotal) -> dict[str, Any]:
    return dict(CostTotalSerializer(total).data)


class ModelCostSerializer(CostTotalSerializer):
    modelName = serializers.CharField()
    # `from` is a Python keyword: declared through the class namespace under its wire name.
    locals()["from"] = serializers.DateTimeField(help_text="start of the period (inclusive)")
    to = serializers.DateTimeField(help_text="end of the period (exclusive)")
