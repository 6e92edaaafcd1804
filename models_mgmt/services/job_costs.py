"""The cost of training jobs: what each used (the worker's meter) priced by a versioned price card.

While a job runs, every heartbeat writes its meter's figures (`job_cost_record`, in the heartbeat's
transaction); when the job ends, whoever ends it marks the cost final (`job_cost_close`), so a job
whose worker was killed keeps the figures of its last heartbeat. The worker then writes the figures
of the run's very end (`job_cost_finish`). A job resumed after its worker went away continues from
what earlier attempts used (`job_cost_carried`).

The price is fixed when a job is first costed: the newest PriceCard valid when the job started, or
the settings' COST_CPU_HOUR / COST_GPU_HOUR / COST_CURRENCY while no card exists (or none was valid
yet); the row keeps the prices it applied, so a later card never reprices a job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from models_mgmt.engine.metering import CostSample
from models_mgmt.errors import InvalidInput
from models_mgmt.models import JobCost, PriceCard, TrainingJob
from models_mgmt.permissions import UserLike

from .audit import audit_record

SECONDS_PER_HOUR = Decimal(3600)
AMOUNT_PLACES = Decimal("0.000001")
PRICE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Prices:
    cpu_hour: Decimal
    gpu_hour: Decimal
    currency: str
    card: PriceCard | None  # None: the settings' default prices


def prices_at(when: dt.datetime) -> Prices:
    """The newest price card valid at `when`; the settings' prices when there is none."""
    card = PriceCard.objects.filter(valid_from__lte=when).order_by("-valid_from", "-id").first()
    if card is None:  # to the card's 4 places, as the job's row stores them
        cpu_hour = Decimal(settings.COST_CPU_HOUR).quantize(PRICE_PLACES)
        gpu_hour = Decimal(settings.COST_GPU_HOUR).quantize(PRICE_PLACES)
        return Prices(cpu_hour, gpu_hour, str(settings.COST_CURRENCY), None)
    return Prices(card.cpu_hour, card.gpu_hour, card.currency, card)


def cost_amount(*, cpu_seconds: float, gpu_seconds: float, cpu_hour: Decimal, gpu_hour: Decimal) -> Decimal:
    """CPU-hours x the CPU price + GPU-hours x the GPU price, to a millionth of the currency."""
    cpu_h = Decimal(repr(float(cpu_seconds))) / SECONDS_PER_HOUR
    gpu_h = Decimal(repr(float(gpu_seconds))) / SECONDS_PER_HOUR
    return (cpu_h * cpu_hour + gpu_h * gpu_hour).quantize(AMOUNT_PLACES)


def job_cost_carried(job_id: int) -> CostSample:
    """What earlier attempts of the job used (nothing for a first attempt): a resumed run adds to it."""
    cost = JobCost.objects.filter(job_id=job_id).first()
    if cost is None:
        return CostSample()
    return CostSample(
        wall_s=cost.wall_seconds,
        cpu_s=cost.cpu_seconds,
        gpu_s=cost.gpu_seconds,
        peak_rss_bytes=cost.peak_rss_bytes,
        units=cost.units,
        unit_kind=cost.unit_kind,
    )


@transaction.atomic
def job_cost_record(*, job: TrainingJob, sample: CostSample, final: bool = False) -> JobCost | None:
    """Write the job's figures and their price (the caller holds the job row: the heartbeat).
    A cost already final is left alone unless this write is final too (the worker's last word)."""
    cost = JobCost.objects.select_for_update().filter(job=job).first()
    if cost is None:
        prices = prices_at(job.started_at or job.created_at or timezone.now())
        cost = JobCost(
            job=job,
            price_card=prices.card,
            cpu_hour=prices.cpu_hour,
            gpu_hour=prices.gpu_hour,
            currency=prices.currency,
        )
    elif cost.final and not final:
        return cost
    cost.wall_seconds = max(sample.wall_s, 0.0)
    cost.cpu_seconds = max(sample.cpu_s, 0.0)
    cost.gpu_seconds = max(sample.gpu_s, 0.0)
    cost.peak_rss_bytes = max(sample.peak_rss_bytes, 0)
    cost.units = max(sample.units, 0)
    cost.unit_kind = sample.unit_kind
    cost.amount = cost_amount(
        cpu_seconds=cost.cpu_seconds, gpu_seconds=cost.gpu_seconds, cpu_hour=cost.cpu_hour, gpu_hour=cost.gpu_hour
    )
    cost.final = cost.final or final
    cost.save()
    return cost


def job_cost_close(job: TrainingJob) -> None:
    """The job ended (in the transaction that ended it): its cost keeps its last figures, final.
    A job that never started (stopped while queued) was never costed: nothing to close."""
    if job.started_at is None:
        return
    JobCost.objects.filter(job=job, final=False).update(final=True, updated_at=timezone.now())


def job_cost_finish(*, job_id: int, sample: CostSample, worker: str) -> JobCost | None:
    """The worker's figures at the very end of its run, if the job is still the worker's."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not worker or job.worker != worker:
            return None  # requeued or taken over: the next attempt (or nobody) costs it
        return job_cost_record(job=job, sample=sample, final=job.finished_at is not None)


def price_card_validate(*, cpu_hour: Decimal, gpu_hour: Decimal, currency: str) -> None:
    """InvalidInput naming each bad field (by its API name)."""
    errors: dict[str, str] = {}
    if cpu_hour < 0:
        errors["cpuHour"] = "Must not be negative."
    if gpu_hour < 0:
        errors["gpuHour"] = "Must not be negative."
    if len(currency) != 3 or not currency.isalpha():
        errors["currency"] = "A three-letter ISO 4217 code, e.g. USD."
    if errors:
        raise InvalidInput("The price card is not valid.", fields=errors)


@transaction.atomic
def price_card_create(
    *,
    actor: UserLike,
    cpu_hour: Decimal,
    gpu_hour: Decimal,
    currency: str,
    valid_from: dt.datetime | None = None,
    note: str = "",
) -> PriceCard:
    """A new version of the prices, valid from `valid_from` (now by default). Cards are never edited:
    the jobs costed with one keep it."""
    price_card_validate(cpu_hour=cpu_hour, gpu_hour=gpu_hour, currency=currency)
    card = PriceCard.objects.create(
        cpu_hour=cpu_hour,
        gpu_hour=gpu_hour,
        currency=currency.upper(),
        valid_from=valid_from or timezone.now(),
        note=note,
        created_by=actor if isinstance(actor, User) else None,
    )
    audit_record(
        actor=actor,
        action="price_card.created",
        obj=card,
        after={
            "cpuHour": str(card.cpu_hour),
            "gpuHour": str(card.gpu_hour),
            "currency": card.currency,
            "validFrom": card.valid_from.isoformat(),
        },
    )
    return card
