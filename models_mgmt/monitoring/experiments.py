"""Shadow experiments after predictions resolve: evaluate each running one (services/experiments.py)
and deliver the alert of a decision to the webhook, outside the evaluation's transaction."""

from __future__ import annotations

import logging

from models_mgmt.choices import ExperimentState
from models_mgmt.models import Alert, Experiment
from models_mgmt.services.experiments import experiment_evaluate

from .alerts import alert_payload
from .webhooks import deliver

logger = logging.getLogger(__name__)


def experiments_evaluate_running() -> list[tuple[int, str]]:
    """Evaluate every running experiment; (id, state) of each."""
    done = []
    for experiment_id in Experiment.objects.filter(state=ExperimentState.RUNNING).values_list("id", flat=True):
        try:
            experiment, alert = experiment_evaluate(experiment_id=experiment_id)
        except Exception:
            logger.exception("evaluating experiment %s failed", experiment_id)
            continue
        done.append((experiment.pk, experiment.state))
        if alert is not None:
            outcome = deliver({"event": "alert", **alert_payload(alert)})
            if outcome:
                Alert.objects.filter(pk=alert.pk).update(webhook_status=outcome[:200])
    return done
