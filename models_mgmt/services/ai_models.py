from __future__ import annotations

import shutil
from typing import Any

from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from models_mgmt.artifacts import job_work_dir, model_artifacts_dir
from models_mgmt.choices import LIVE_JOB_STATUSES, PERM_MANAGE, ROLE_OBJECT_PERMS, Role
from models_mgmt.engine.families import FAMILIES
from models_mgmt.errors import Conflict, InvalidInput
from models_mgmt.models import AIModel, Dataset
from models_mgmt.permissions import UserLike, require_global_perm, require_model_perm

from .audit import audit_record
from .base_models import base_model_reference_check

EDITABLE_FIELDS = ("description", "base_model", "default_dataset")


def _snapshot(model: AIModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "family": model.family,
        "baseModel": model.base_model,
        "description": model.description,
        "defaultDataset": model.default_dataset.name if model.default_dataset else None,
        "owner": model.owner.get_username(),
    }


@transaction.atomic
def ai_model_create(
    *,
    actor: UserLike,
    name: str,
    family: str,
    base_model: str = "",
    description: str = "",
    default_dataset: Dataset | None = None,
) -> AIModel:
    """Register a model. The creator receives every object permission on it."""
    owner = require_global_perm(actor, "add_aimodel", "You may not register AI models (the maintainer role may).")
    if family not in FAMILIES:
        raise InvalidInput("Unknown family.", fields={"family": [f"choose one of: {', '.join(FAMILIES)}"]})
    base_model_reference_check(family, base_model)
    try:
        with transaction.atomic():
            model = AIModel.objects.create(
                name=name,
                family=family,
                base_model=base_model,
                description=description,
                default_dataset=default_dataset,
                owner=owner,
            )
    except IntegrityError as exc:
        raise InvalidInput("Name taken.", fields={"name": ["an AI model with this name already exists"]}) from exc
    for codename in ROLE_OBJECT_PERMS[Role.MAINTAINER]:
        assign_perm(f"models_mgmt.{codename}", actor, model)
    audit_record(actor=actor, action="model.created", obj=model, ai_model=model, after=_snapshot(model))
    return model


@transaction.atomic
def ai_model_update(*, actor: UserLike, model: AIModel, changes: dict[str, Any]) -> AIModel:
    require_model_perm(actor, model, PERM_MANAGE, "change settings")
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput("Read-only fields.", fields={k: ["this field cannot be changed"] for k in unknown})
    model = AIModel.objects.select_for_update().get(pk=model.pk)
    if "base_model" in changes:
        base_model_reference_check(model.family, changes["base_model"])
    before = _snapshot(model)
    for key, value in changes.items():
        setattr(model, key, value)
    model.save()
    audit_record(actor=actor, action="model.updated", obj=model, ai_model=model, before=before, after=_snapshot(model))
    return model


@transaction.atomic
def ai_model_delete(*, actor: UserLike, model: AIModel) -> None:
    require_model_perm(actor, model, PERM_MANAGE, "delete the model")
    model = AIModel.objects.select_for_update().get(pk=model.pk)
    if model.jobs.filter(status__in=LIVE_JOB_STATUSES).exists():
        raise Conflict("The model has a training job in progress; stop it first.", code="job_in_progress")
    audit_record(actor=actor, action="model.deleted", obj=model, ai_model=None, before=_snapshot(model))
    leftovers = [model_artifacts_dir(model.name), *(job_work_dir(job) for job in model.jobs.all())]
    model.delete()

    # Files go only once the rows are gone for good: a rolled-back delete keeps its artifacts.
    def remove_files() -> None:
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)

    transaction.on_commit(remove_files)


@transaction.atomic
def ai_model_access_set(*, actor: UserLike, model: AIModel, grantee: User | Group, role: str | None) -> list[str]:
    """Give a user or group exactly the object permissions of `role` on the model (None revokes all).

    Returns the codenames the grantee holds afterwards.
    """
    require_model_perm(actor, model, PERM_MANAGE, "change access")
    if role is not None and role not in ROLE_OBJECT_PERMS:
        raise InvalidInput("Unknown role.", fields={"role": [f"choose one of: {', '.join(ROLE_OBJECT_PERMS)}"]})
    if grantee == model.owner and role != Role.MAINTAINER:
        raise InvalidInput("Owner keeps full access.", fields={"role": ["the owner's access cannot be reduced"]})
    managed = set(ROLE_OBJECT_PERMS[Role.MAINTAINER])
    before = sorted(set(get_perms(grantee, model)) & managed)
    wanted = set(ROLE_OBJECT_PERMS[role]) if role else set()
    for codename in managed - wanted:
        if codename in before:
            remove_perm(f"models_mgmt.{codename}", grantee, model)
    for codename in wanted - set(before):
        assign_perm(f"models_mgmt.{codename}", grantee, model)
    after = sorted(wanted)
    if after == before:
        return after
    kind = "group" if isinstance(grantee, Group) else "user"
    name = grantee.name if isinstance(grantee, Group) else grantee.get_username()
    audit_record(
        actor=actor,
        action="model.access_changed",
        obj=model,
        ai_model=model,
        before={kind: name, "permissions": before},
        after={kind: name, "permissions": after, "role": role},
    )
    return after
