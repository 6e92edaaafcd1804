from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from models_mgmt.choices import PERM_ACTIVATE, VERSION_TRANSITIONS, VersionStatus
from models_mgmt.models import AIModel, ModelVersion

from .ai_models import require_model_perm
from .audit import audit_record
from .errors import Conflict, NotFound, Unavailable


def _transition(version: ModelVersion, to: str) -> None:
    if to not in VERSION_TRANSITIONS[version.status]:
        raise Conflict(
            f"Version {version.version} is {version.status}; it cannot become {to}.", code="invalid_transition"
        )
    version.status = to


@transaction.atomic
def model_version_activate(*, actor: Any, model: AIModel, version: str) -> ModelVersion:
    """Make `version` the active one; the previously active version becomes deprecated.

    Also the rollback path: a deprecated version can be activated again.
    """
    require_model_perm(actor, model, PERM_ACTIVATE, "activate versions")
    return _activate(model=model, version=version, actor=actor, reason="manual")


@transaction.atomic
def model_version_activate_system(*, model: AIModel, version: ModelVersion, reason: str) -> ModelVersion:
    """Activation decided by the pipeline itself (activationPolicy=if_better), audited as such."""
    return _activate(model=model, version=version.version, actor=None, reason=reason)


def _activate(*, model: AIModel, version: str, actor: Any, reason: str) -> ModelVersion:
    # The model row is locked so concurrent activations are serialised; the partial unique index
    # guarantees one active version even if something bypasses this function.
    if not settings.MODEL_VERSIONING_ENABLED:
        raise Unavailable("Model versioning is disabled (MODEL_VERSIONING_ENABLED=false).", code="versioning_disabled")
    AIModel.objects.select_for_update().filter(pk=model.pk).first()
    target = ModelVersion.objects.select_for_update().filter(model=model, version=version).first()
    if target is None:
        raise NotFound(f"Version '{version}' of model '{model.name}' not found.")
    if target.status == VersionStatus.ACTIVE:
        return target
    _transition(target, VersionStatus.ACTIVE)  # validates before anything is written
    previous = ModelVersion.objects.select_for_update().filter(model=model, status=VersionStatus.ACTIVE).first()
    if previous is not None:
        _transition(previous, VersionStatus.DEPRECATED)
        previous.save(update_fields=["status"])
    target.activated_at = timezone.now()
    target.save(update_fields=["status", "activated_at"])
    audit_record(
        actor=actor,
        action="version.activated",
        obj=target,
        ai_model=model,
        before={"active": previous.version if previous else None},
        after={"active": target.version, "reason": reason},
    )
    from models_mgmt import serving
    from models_mgmt.progress import publish_model_event

    # Warm this process's serving cache once the activation is committed (other processes swap on
    # their next request: every request reads the active version from the database).
    transaction.on_commit(lambda: serving.preload(model.pk, target.version, target.checksum, target.artifact_path))

    publish_model_event(
        model,
        "version.activated",
        {"version": target.version, "previousVersion": previous.version if previous else None, "reason": reason},
    )
    return target
