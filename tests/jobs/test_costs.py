"""The cost of every job: exact figures from a fake clock, the price card valid at the job's start,
a killed job costed from its last heartbeat, a study's cost the sum of its trials, and the API."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal

import pytest
from django.utils import timezone

from models_mgmt.choices import JobStatus, Role, StudyRole, TrialState
from models_mgmt.engine.metering import CostSample, Meter, ProcessTimes, usable_cpus
from models_mgmt.errors import InvalidInput
from models_mgmt.models import JobCost, ModelVersion, PriceCard, Study, StudyTrial, TrainingJob
from models_mgmt.selectors import study_cost
from models_mgmt.services.job_costs import cost_amount, job_cost_carried, job_cost_record, price_card_create
from models_mgmt.services.training_jobs import training_job_claim, training_job_finish
from models_mgmt.training import progress as progress_module
from models_mgmt.training.progress import JobProgress
from models_mgmt.training.reaper import training_jobs_reap
from models_mgmt.training.worker import training_job_execute
from tests.factories import AIModelFactory, ModelVersionFactory, TrainingJobFactory, UserFactory, grant
from tests.jobs.helpers import start

pytestmark = pytest.mark.django_db
API = "/api/model-management"


@pytest.fixture(autouse=True)
def default_prices(settings):
    settings.COST_CPU_HOUR, settings.COST_GPU_HOUR, settings.COST_CURRENCY = Decimal("0.05"), Decimal("2.50"), "USD"


class FakeProcess:
    def __init__(self) -> None:
        self.now, self.cpu, self.gpu = 0.0, 0.0, False

    def meter(self) -> Meter:
        return Meter(
            clock=lambda: self.now,
            times=lambda: ProcessTimes(self.cpu, 64 * 2**20),
            gpu_in_use=lambda: self.gpu,
            reset_peak=lambda: True,
        )


def running_job(model=None, **fields) -> TrainingJob:
    job = TrainingJobFactory(**({"model": model} if model else {}), **fields)
    claimed = training_job_claim(job_id=job.pk)
    assert claimed is not None
    return claimed


def test_a_fake_clock_gives_the_exact_figure():
    job = running_job()
    fake = FakeProcess()
    progress = JobProgress(job_id=job.pk, worker=job.worker, meter=fake.meter())
    progress.meter.start()
    fake.now, fake.cpu, fake.gpu = 720.0, 1800.0, True  # 0.5 CPU-hours; the GPU in use for 0.2 hours
    progress.emit()  # the heartbeat writes the cost
    cost = JobCost.objects.get(job=job)
    assert (cost.wall_seconds, cost.cpu_seconds, cost.gpu_seconds) == (720.0, 1800.0, 720.0)
    assert cost.peak_rss_bytes == 64 * 2**20 and not cost.final
    assert cost.amount == Decimal("0.5") * Decimal("0.05") + Decimal("0.2") * Decimal("2.50") == Decimal("0.525")
    assert (cost.currency, cost.price_card) == ("USD", None)  # no card: the settings' prices
    training_job_finish(job.pk, JobStatus.SUCCEEDED, job.worker)
    cost.refresh_from_db()
    assert cost.final and cost.amount == Decimal("0.525")


def test_the_price_card_valid_when_the_job_started_applies(owner):
    now = timezone.now()
    old = price_card_create(actor=owner, cpu_hour=Decimal("1"), gpu_hour=Decimal("10"), currency="eur",
                            valid_from=now - dt.timedelta(days=10))  # fmt: skip
    new = price_card_create(actor=owner, cpu_hour=Decimal("2"), gpu_hour=Decimal("20"), currency="EUR",
                            valid_from=now - dt.timedelta(days=1))  # fmt: skip
    sample = CostSample(wall_s=3600.0, cpu_s=3600.0)
    costs = {}
    for days, name in ((20, "before"), (5, "old"), (0, "new")):
        job = running_job()
        TrainingJob.objects.filter(pk=job.pk).update(started_at=now - dt.timedelta(days=days))
        job.refresh_from_db()
        costs[name] = job_cost_record(job=job, sample=sample)
    assert (costs["before"].price_card, costs["before"].amount, costs["before"].currency) == (
        None,
        Decimal("0.05"),
        "USD",
    )
    assert (costs["old"].price_card, costs["old"].amount, costs["old"].currency) == (old, Decimal("1"), "EUR")
    assert (costs["new"].price_card, costs["new"].amount) == (new, Decimal("2"))
    # A card added later never reprices a job already costed.
    price_card_create(actor=owner, cpu_hour=Decimal("9"), gpu_hour=Decimal("9"), currency="EUR",
                      valid_from=now - dt.timedelta(days=30))  # fmt: skip
    again = job_cost_record(job=costs["old"].job, sample=CostSample(wall_s=7200.0, cpu_s=7200.0))
    assert (again.price_card, again.amount) == (old, Decimal("2"))


def test_a_price_card_is_validated(owner):
    with pytest.raises(InvalidInput) as caught:
        price_card_create(actor=owner, cpu_hour=Decimal("-1"), gpu_hour=Decimal("1"), currency="dollars")
    assert set(caught.value.fields) == {"cpuHour", "currency"}
    assert not PriceCard.objects.exists()


def test_a_killed_job_is_costed_from_its_last_heartbeat(settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT_S, settings.TRAINING_MAX_ATTEMPTS = 1, 1
    job = running_job()
    fake = FakeProcess()
    progress = JobProgress(job_id=job.pk, worker=job.worker, meter=fake.meter())
    progress.meter.start()
    fake.now, fake.cpu = 30.0, 25.0
    progress.emit()
    # The worker is killed: its pid is gone and its heartbeat goes stale.
    TrainingJob.objects.filter(pk=job.pk).update(
        worker=f"{socket.gethostname()}:999999", heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert (job.pk, "failed") in training_jobs_reap()
    cost = JobCost.objects.get(job=job)
    assert cost.final and (cost.wall_seconds, cost.cpu_seconds) == (30.0, 25.0)
    # A later heartbeat of the lost worker (were it only stuck) changes nothing.
    job.refresh_from_db()
    job_cost_record(job=job, sample=CostSample(wall_s=99.0, cpu_s=99.0))
    assert JobCost.objects.get(job=job).wall_seconds == 30.0


def test_a_resumed_job_carries_what_earlier_attempts_used():
    job = running_job()
    job_cost_record(job=job, sample=CostSample(wall_s=10.0, cpu_s=8.0, peak_rss_bytes=5, units=40))
    assert job_cost_carried(job.pk) == CostSample(wall_s=10.0, cpu_s=8.0, peak_rss_bytes=5, units=40)
    assert job_cost_carried(job.pk + 1000) == CostSample()


def study_with_trials(model) -> tuple[Study, list[TrainingJob]]:
    study = Study.objects.create(
        model=model, dataset=model.default_dataset, space={}, config={}, n_trials=4, status="finished"
    )
    jobs = []
    for number, (state, status, cpu) in enumerate(
        [
            (TrialState.COMPLETE, JobStatus.SUCCEEDED, 3600.0),
            (TrialState.FAIL, JobStatus.FAILED, 1800.0),
            (TrialState.PRUNED, JobStatus.SUCCEEDED, 900.0),
            (TrialState.WAITING, JobStatus.QUEUED, None),  # never ran: costs nothing
        ]
    ):
        job = TrainingJobFactory(
            model=model,
            dataset=model.default_dataset,
            study=study,
            study_role=StudyRole.TRIAL,
            status=status,
            started_at=None if cpu is None else timezone.now(),
        )
        StudyTrial.objects.create(study=study, job=job, number=number, state=state)
        if cpu is not None:
            job_cost_record(job=job, sample=CostSample(wall_s=cpu, cpu_s=cpu, gpu_s=cpu / 2), final=True)
        jobs.append(job)
    final = TrainingJobFactory(model=model, dataset=model.default_dataset, study=study, study_role=StudyRole.FINAL)
    job_cost_record(job=final, sample=CostSample(wall_s=1.0, cpu_s=1.0), final=True)
    return study, jobs


def test_a_study_costs_the_sum_of_its_trials_failed_and_pruned_included(api, ai_model):
    study, jobs = study_with_trials(ai_model)
    total = study_cost(study)
    trial_amounts = [JobCost.objects.get(job=j).amount for j in jobs[:3]]
    assert total.jobs == 3 and total.amounts == {"USD": sum(trial_amounts)}
    assert total.cpu_seconds == 3600.0 + 1800.0 + 900.0
    shown = api(ai_model.owner).get(f"{API}/studies/{study.pk}").data
    assert shown["cost"]["jobs"] == 3 and Decimal(shown["cost"]["amounts"]["USD"]) == sum(trial_amounts)
    by_state = {t["state"]: t["cost"] for t in shown["trials"]}
    assert by_state["waiting"] is None
    assert sum(Decimal(by_state[s]["amount"]) for s in ("complete", "fail", "pruned")) == sum(trial_amounts)


def test_a_version_costs_its_lineage(api, ai_model):
    parent = ModelVersionFactory(model=ai_model, version="v1.0.0")
    child = ModelVersionFactory(model=ai_model, version="v1.1.0", parent=parent)
    ModelVersionFactory(model=ai_model, version="v2.0.0")  # another line: not counted
    for version, cpu in ((parent, 3600.0), (child, 7200.0)):
        job = TrainingJobFactory(
            model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.SUCCEEDED, started_at=timezone.now()
        )
        TrainingJob.objects.filter(pk=job.pk).update(version=version)
        job.refresh_from_db()
        job_cost_record(job=job, sample=CostSample(wall_s=cpu, cpu_s=cpu), final=True)
    other = TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.SUCCEEDED)
    job_cost_record(job=other, sample=CostSample(wall_s=1.0, cpu_s=1.0), final=True)
    body = api(ai_model.owner).get(f"{API}/models/{ai_model.name}/versions/v1.1.0").data
    assert body["cost"]["jobs"] == 2 and body["cost"]["amounts"] == {"USD": "0.150000"}
    assert api(ai_model.owner).get(f"{API}/models/{ai_model.name}/versions/v1.0.0").data["cost"]["jobs"] == 1


def test_job_detail_list_and_status_show_the_cost(api, ai_model):
    job = running_job(model=ai_model, dataset=ai_model.default_dataset)
    job_cost_record(job=job, sample=CostSample(wall_s=60.0, cpu_s=36.0, units=900))
    client = api(ai_model.owner)
    for body in (
        client.get(f"{API}/jobs/{job.pk}").data,
        client.get(f"{API}/jobs").data["results"][0],
        client.get(f"{API}/models/{ai_model.name}/fine-tune/status").data,
    ):
        cost = body["cost"]
        assert (cost["cpuSeconds"], cost["units"], cost["unitKind"]) == (36.0, 900, "samples")
        assert (cost["amount"], cost["currency"], cost["final"]) == ("0.000500", "USD", False)


def test_model_cost_over_a_period(api, ai_model):
    now = timezone.now()
    for days, cpu in ((40, 3600.0), (10, 7200.0), (0, 36.0)):
        job = TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.SUCCEEDED)
        TrainingJob.objects.filter(pk=job.pk).update(started_at=now - dt.timedelta(days=days))
        job.refresh_from_db()
        job_cost_record(job=job, sample=CostSample(wall_s=cpu, cpu_s=cpu), final=True)
    client = api(ai_model.owner)
    url = f"{API}/models/{ai_model.name}/cost"
    default = client.get(url).data  # the last 30 days
    assert default["jobs"] == 2 and default["amounts"] == {"USD": "0.100500"}
    start = (now - dt.timedelta(days=41)).date().isoformat()
    end = (now - dt.timedelta(days=5)).date().isoformat()
    body = client.get(url, {"from": start, "to": end}).data
    assert body["jobs"] == 2 and body["amounts"] == {"USD": "0.150000"} and body["modelName"] == ai_model.name
    assert body["from"].startswith(start) and body["to"].startswith(end)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2024-13-01"}, "to"),
        ({"from": "2024-02-01", "to": "2024-01-01"}, "to"),
        ({"to": "0001-01-02"}, "to"),
        ({"from": "9999-12-31T23:00:00-05:00"}, "from"),
    ],
)
def test_a_bad_period_is_400_naming_the_field(api, ai_model, params, field):
    response = api(ai_model.owner).get(f"{API}/models/{ai_model.name}/cost", params)
    assert response.status_code == 400 and field in response.data["fields"]


def test_model_cost_of_a_model_the_caller_may_not_see_is_404(api, ai_model):
    stranger = UserFactory(role=Role.VIEWER)
    assert api(stranger).get(f"{API}/models/{ai_model.name}/cost").status_code == 404
    other = AIModelFactory(name="other-model")
    grant(stranger, other, Role.VIEWER)
    assert api(stranger).get(f"{API}/models/other-model/cost").status_code == 200


def test_a_real_job_and_a_real_study_are_costed_through_the_worker(api, sp500_model):
    """A real run in this process: CPU seconds never exceed wall x the usable CPUs; units are
    samples x epochs; every trial of a study is costed and the study's cost is their sum."""
    import torch

    torch.set_num_threads(1)
    outcome = training_job_execute(job_id=start(api, sp500_model, {"epochs": 2, "startDate": "2016-01-01"}))
    version = ModelVersion.objects.get(model=sp500_model, version=outcome.version)
    cost = JobCost.objects.get(job__version=version)
    assert cost.final and cost.wall_seconds > 0 and 0 < cost.cpu_seconds <= cost.wall_seconds * usable_cpus()
    assert cost.peak_rss_bytes > 0 and cost.gpu_seconds == 0.0
    assert (cost.units, cost.unit_kind) == (version.training_data_size * version.metadata["epochs"], "samples")
    assert cost.amount == cost_amount(
        cpu_seconds=cost.cpu_seconds, gpu_seconds=0.0, cpu_hour=Decimal("0.05"), gpu_hour=Decimal("2.50")
    )

    body = {
        "space": {"dropout": {"low": 0.0, "high": 0.5}},
        "nTrials": 2,
        "parallelism": 1,
        "config": {"epochs": 1, "startDate": "2014-01-01", "earlyStoppingPatience": 0, "walkForwardFolds": 2},
    }
    response = api(sp500_model.owner).post(f"{API}/models/{sp500_model.name}/studies", body, format="json")
    assert response.status_code == 202, response.data
    study = Study.objects.get(pk=response.data["id"])
    while job := TrainingJob.objects.filter(study=study, status=JobStatus.QUEUED).order_by("id").first():
        training_job_execute(job_id=job.pk)
    trials = JobCost.objects.filter(job__study=study, job__study_role=StudyRole.TRIAL)
    assert trials.count() == 2 and all(c.final and c.units > 0 for c in trials)
    assert all(c.cpu_seconds <= c.wall_seconds * usable_cpus() for c in trials)
    shown = api(sp500_model.owner).get(f"{API}/studies/{study.pk}").data["cost"]
    assert shown["jobs"] == 2 and Decimal(shown["amounts"]["USD"]) == sum(c.amount for c in trials)


def test_a_cost_that_cannot_be_written_never_costs_the_job_its_heartbeat(monkeypatch):
    def broken(**kwargs):
        JobCost.objects.create(job=kwargs["job"], cpu_hour=1, gpu_hour=1, currency="USD", wall_seconds=-1)

    monkeypatch.setattr(progress_module, "job_cost_record", broken)  # violates job_cost_not_negative
    job = running_job()
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=None)
    fake = FakeProcess()
    progress = JobProgress(job_id=job.pk, worker=job.worker, meter=fake.meter())
    progress.meter.start()
    progress.emit()
    job.refresh_from_db()
    assert job.heartbeat_at is not None and not JobCost.objects.filter(job=job).exists()


def test_settings_prices_are_kept_to_the_cards_four_places(settings):
    settings.COST_CPU_HOUR = Decimal("0.123456")
    job = running_job()
    cost = job_cost_record(job=job, sample=CostSample(wall_s=3600.0, cpu_s=3600.0))
    assert cost.cpu_hour == Decimal("0.1235") and cost.amount == Decimal("0.1235")
