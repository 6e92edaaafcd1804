"""An experiment's state changes, shared by the experiment services and the activation service
(which stops the running experiment whose champion it replaced)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from models_mgmt.choices import EXPERIMENT_TRANSITIONS, ExperimentState
from models_mgmt.errors import Conflict
from models_mgmt.models import AIModel, Experiment, ModelVersion
from models_mgmt.permissions import UserLike
from models_mgmt.realtime.events import publish_model_event

from .audit import audit_record


def experiment_summary(experiment: Experiment) -> dict[str, Any]:
    """What the audit trail and the feed keep of an experiment (no per-day history)."""
    return {
        "experimentId": experiment.pk,
        "state": experiment.state,
        "champion": experiment.champion.version,
        "challenger": experiment.challenger.version,
        "reason": experiment.reason,
    }


def experiment_transition(
    experiment: Experiment, to: str, *, actor: UserLike | None, reason: str, action: str
) -> Experiment:
    """Move `experiment` (locked by the caller) to `to`, audited and published on the model's feed."""
    if to not in EXPERIMENT_TRANSITIONS[experiment.state]:
        raise Conflict(
            f"Experiment {experiment.pk} is {experiment.state}; it cannot become {to}.", code="invalid_transition"
        )
    before = experiment_summary(experiment)
    experiment.state = to
    experiment.reason = reason
    if to != ExperimentState.PROMOTED:
        experiment.ended_at = timezone.now()
    experiment.save(update_fields=["state", "reason", "ended_at"])
    after = experiment_summary(experiment)
    audit_record(actor=actor, action=action, obj=experiment, ai_model=experiment.model, before=before, after=after)
    publish_model_event(experiment.model, "experiment", after)
    return experiment


def experiments_stop_for_new_champion(*, model: AIModel, active: ModelVersion, actor: UserLike | None) -> None:
    """A running experiment whose champion is no longer the active version compares nothing the
    model serves: it stops (called inside the activation's transaction)."""
    running = (
        Experiment.objects.select_for_update(of=("self",))
        .select_related("model", "champion", "challenger")
        .filter(model=model, state=ExperimentState.RUNNING)
        .exclude(champion=active)
    )
    for experiment in running:
        experiment_transition(
            experiment,
            ExperimentState.STOPPED,
            actor=actor,
            reason=f"{active.version} was activated, replacing the champion {experiment.champion.version}",
            action="experiment.stopped",
        )
