"""The dashboard pages without a browser: login, permissions in the HTML, each tab for each role."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from models_mgmt.choices import JobStatus, Role, VersionStatus
from models_mgmt.engine.metering import CostSample
from models_mgmt.models import ModelVersion, Study
from models_mgmt.services.job_costs import job_cost_record
from tests.factories import (
    AIModelFactory,
    DatasetFactory,
    ModelVersionFactory,
    TrainingJobFactory,
    UserFactory,
    grant,
)

TABS = [
    "/model-management/",
    "/model-management/fine-tuning/",
    "/model-management/versions/",
    "/model-management/monitoring/",
]


@pytest.fixture
def model(db):
    model = AIModelFactory(name="dash-model")
    grant(model.owner, model, Role.MAINTAINER)
    ModelVersionFactory(model=model, version="v1.0.0", status=VersionStatus.ACTIVE)
    ModelVersionFactory(model=model, version="v1.1.0", status=VersionStatus.READY, accuracy=0.6)
    return model


def signed_in(role: str, model) -> Client:
    user = UserFactory(role=role)
    grant(user, model, role)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", [*TABS, "/model-management"])
def test_anonymous_visitors_go_to_the_login(client, db, path):
    response = client.get(path, follow=True)
    assert response.redirect_chain[-1][0].startswith("/accounts/login/?next=/model-management/")
    assert b'name="password"' in response.content


def test_the_root_leads_to_the_dashboard(client, db):
    assert client.get("/")["Location"] == "/model-management/"


def test_login_with_a_password_lands_on_the_dashboard(client, model):
    UserFactory(username="alice", role=Role.VIEWER)
    response = client.post("/accounts/login/", {"username": "alice", "password": "pw-123456"})
    assert response.status_code == 302 and response["Location"] == "/model-management/"
    refused = Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert refused.status_code == 200 and b"alert-error" in refused.content


def test_logout_is_a_post_and_ends_the_session(model):
    client = signed_in(Role.VIEWER, model)
    assert client.get("/model-management/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/model-management/").status_code == 302


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TRAINER, Role.MAINTAINER])
@pytest.mark.parametrize("path", TABS)
def test_every_tab_renders_for_every_role(model, role, path):
    response = signed_in(role, model).get(path, {"model": model.name})
    assert response.status_code == 200
    html = response.content.decode()
    assert "dash-model" in html
    assert "Sign out" in html
    # Every asset is served locally: no script, style or image from another host. (Matching the
    # bare letters "cdn" would also hit random CSRF tokens.)
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "an asset from another host"


def test_a_viewer_gets_no_start_stop_or_activate_controls(model):
    client = signed_in(Role.VIEWER, model)
    models_page = client.get("/model-management/").content.decode()
    assert "Details" in models_page and 'data-action="start-training"' not in models_page
    tuning = client.get("/model-management/fine-tuning/", {"model": model.name}).content.decode()
    assert 'id="finetune-form"' not in tuning and 'id="start-button"' not in tuning and 'id="stop-button"' not in tuning
    assert "does not allow starting" in tuning
    versions = client.get("/model-management/versions/", {"model": model.name}).content.decode()
    assert "v1.1.0" in versions and 'data-action="activate"' not in versions


def test_a_trainer_may_start_but_not_activate(model):
    client = signed_in(Role.TRAINER, model)
    assert 'data-action="start-training"' in client.get("/model-management/").content.decode()
    tuning = client.get("/model-management/fine-tuning/", {"model": model.name}).content.decode()
    assert 'id="start-button"' in tuning and 'id="stop-button"' in tuning
    versions = client.get("/model-management/versions/", {"model": model.name}).content.decode()
    assert 'data-action="activate"' not in versions


def test_a_maintainer_may_activate_a_ready_version_only(model):
    client = signed_in(Role.MAINTAINER, model)
    versions = client.get("/model-management/versions/", {"model": model.name}).content.decode()
    assert versions.count('data-action="activate"') == 1
    assert 'data-action="activate" data-version="v1.1.0"' in versions


def test_the_form_is_prefilled_with_the_configured_defaults(model, settings):
    settings.DEFAULT_TRAINING_EPOCHS = 7
    settings.DEFAULT_LEARNING_RATE = 0.002
    html = signed_in(Role.TRAINER, model).get("/model-management/fine-tuning/").content.decode()
    assert 'id="f-epochs" name="epochs" type="number" min="1" max="10000" step="1" value="7"' in html
    assert 'value="0.002"' in html
    assert 'data-hp="hiddenSizes"' in html and 'value="64, 32"' in html


def test_metrics_are_shown_beside_their_baselines(model):
    version = model.versions.get(version="v1.1.0")
    version.baselines = {"overallScore": 0.5, "signalAccuracy": 0.51, "riskAssessment": 0.5, "patternRecognition": 0.6}
    version.save()
    html = signed_in(Role.VIEWER, model).get("/model-management/versions/", {"model": model.name}).content.decode()
    assert "60.0 %" in html and "50.0 %" in html and "+10.0 pt" in html


def test_a_walk_forward_report_is_shown_with_mean_sd_and_edge(model):
    version = model.versions.get(version="v1.1.0")
    keys = ("patternRecognition", "signalAccuracy", "riskAssessment", "overallScore")
    fold = {
        "fold": 1,
        "testWindow": ["2019-01-02", "2019-12-31"],
        "trainSamples": 900,
        "metrics": dict.fromkeys(keys, 0.55),
        "baselines": dict.fromkeys(keys, 0.5),
    }
    version.metadata = {
        **version.metadata,
        "walkForward": {
            "foldCount": 3,
            "purgeBars": 5,
            "holdoutWindow": ["2020-01-02", "2020-12-31"],
            "folds": [fold],
            "mean": dict.fromkeys(keys, 0.55),
            "sd": dict.fromkeys(keys, 0.02),
            "baselineMean": dict.fromkeys(keys, 0.5),
            "edge": dict.fromkeys(keys, 0.05),
        },
    }
    version.save()
    html = signed_in(Role.VIEWER, model).get("/model-management/versions/", {"model": model.name}).content.decode()
    assert 'data-role="walk-forward"' in html and "3 purged folds (5 bars)" in html
    assert "55.0 % ± 2.0 pt" in html and "+5.0 pt" in html and "2019-01-02 to 2019-12-31" in html
    assert html.count('data-role="walk-forward"') == 1  # v1.0.0 has no report


def test_the_fine_tune_form_offers_walk_forward(model):
    html = signed_in(Role.TRAINER, model).get("/model-management/fine-tuning/", {"model": model.name}).content.decode()
    assert 'name="evaluation"' in html and 'value="walk_forward"' in html and 'name="walkForwardFolds"' in html


def test_the_search_section_offers_a_default_space_to_a_trainer_only(model):
    trainer = signed_in(Role.TRAINER, model).get("/model-management/fine-tuning/", {"model": model.name})
    html = trainer.content.decode()
    assert 'id="search"' in html and 'id="study-form"' in html and "learningRate" in html
    assert 'data-study=""' in html and "No study yet." in html and "dashboard/search.js" in html
    viewer = signed_in(Role.VIEWER, model).get("/model-management/fine-tuning/", {"model": model.name})
    assert 'id="search"' in viewer.content.decode() and 'id="study-form"' not in viewer.content.decode()


def test_the_search_section_follows_the_latest_study(model):
    study = Study.objects.create(
        model=model, dataset=DatasetFactory(), space={"dropout": {"choices": [0.1]}}, config={}, n_trials=3
    )
    html = signed_in(Role.VIEWER, model).get("/model-management/fine-tuning/", {"model": model.name}).content.decode()
    assert f'data-study="{study.pk}"' in html and 'data-study-live="true"' in html


def test_models_not_shared_with_the_user_do_not_appear(model):
    hidden = AIModelFactory(name="secret-model")
    client = signed_in(Role.VIEWER, model)
    for path in TABS:
        assert hidden.name not in client.get(path, {"model": hidden.name}).content.decode()


def test_monitoring_says_not_computed_rather_than_inventing(model):
    html = signed_in(Role.VIEWER, model).get("/model-management/monitoring/").content.decode()
    assert "Database" in html and "Channel layer" in html
    assert "not computed yet" in html


def test_dates_are_written_for_people_not_as_iso_strings(model):
    """The versions tab showed `trained 2026-12-01T23:18`."""
    version = model.versions.get(version="v1.1.0")
    version.trained_at = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    version.save(update_fields=["trained_at"])
    html = signed_in(Role.VIEWER, model).get("/model-management/versions/", {"model": model.name}).content.decode()
    assert "trained 4 Mar 2026, 05:06 UTC" in html
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", html)


def test_the_site_serves_a_favicon(client, db):
    """Admin pages (which name no icon) made every browser ask for a missing /favicon.ico."""
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header


def test_monitoring_has_a_guardrails_panel_with_every_visible_model(model):
    html = signed_in(Role.VIEWER, model).get("/model-management/monitoring/").content.decode()
    assert 'id="guardrails"' in html and 'src="/static/dashboard/guardrails.js"' in html
    assert '<option value="dash-model">dash-model</option>' in html


def test_the_fine_tuning_tab_shows_the_latest_jobs_cost_and_versions_their_lineage_cost(model, settings):
    settings.COST_CPU_HOUR, settings.COST_GPU_HOUR, settings.COST_CURRENCY = Decimal("0.05"), Decimal("2.50"), "USD"
    parent, child = ModelVersion.objects.get(version="v1.0.0"), ModelVersion.objects.get(version="v1.1.0")
    child.parent = parent
    child.save()
    for version, cpu in ((parent, 3600.0), (child, 7200.0)):
        job = TrainingJobFactory(
            model=model, dataset=model.default_dataset, status=JobStatus.SUCCEEDED, started_at=timezone.now()
        )
        job.version = version
        job.save()
        job_cost_record(job=job, sample=CostSample(wall_s=cpu, cpu_s=cpu), final=True)
    client = signed_in(Role.VIEWER, model)
    page = client.get("/model-management/fine-tuning/").content.decode()
    assert re.search(r'id="cost-text"[^>]*>0\.1000 USD · CPU 120\.0 min in 120\.0 min<', page)
    assert re.search(r'id="model-cost-text"[^>]*>0\.1500 USD over 2 jobs<', page)
    versions = client.get("/model-management/versions/").content.decode()
    assert "cost 0.1500 USD over 2 jobs" in versions and "cost 0.0500 USD over 1 job" in versions


def test_monitoring_has_an_experiments_panel_with_every_visible_model(model):
    html = signed_in(Role.VIEWER, model).get("/model-management/monitoring/").content.decode()
    assert 'id="experiments"' in html and 'src="/static/dashboard/experiments.js"' in html
    assert 'id="experiments-chart"' in html and "chart.umd.min.js" in html
    assert '<select id="experiments-model"><option value="dash-model">dash-model</option>' in html
