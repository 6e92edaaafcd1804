"""Registering the local base models that `llm-lora` models fine-tune."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from models_mgmt.engine.families import LLM_LORA
from models_mgmt.engine.llm.base import BaseModelError, check_base_dir
from models_mgmt.errors import InvalidInput
from models_mgmt.models import BaseModel
from models_mgmt.permissions import UserLike, require_global_perm

from .audit import audit_record


def _snapshot(base: BaseModel) -> dict[str, Any]:
    return {
        "name": base.name,
        "path": base.path,
        "ollamaTag": base.ollama_tag,
        "architecture": base.architecture,
        "parameters": base.parameters,
        "files": base.files,
    }


def base_model_register(*, actor: UserLike, name: str, path: str, ollama_tag: str, description: str = "") -> BaseModel:
    """Check the directory (files, architecture, sha256 of every file), then record it.

    The files are read before the transaction opens: hashing a large model takes a while and must
    not hold database locks.
    """
    user = require_global_perm(actor, "add_basemodel", "You may not register base models (the maintainer role may).")
    try:
        check = check_base_dir(path)
    except BaseModelError as exc:
        raise InvalidInput("Not a usable base model directory.", fields={"path": exc.problems}) from exc
    with transaction.atomic():
        try:
            with transaction.atomic():
                base = BaseModel.objects.create(
                    name=name,
                    path=check.path,
                    ollama_tag=ollama_tag,
                    architecture=check.architecture,
                    model_type=check.model_type,
                    parameters=check.parameters,
                    files=check.files,
                    eos_token=check.eos_token or "",
                    description=description,
                    registered_by=user,
                )
        except IntegrityError as exc:
            raise InvalidInput("Name taken.", fields={"name": ["a base model with this name already exists"]}) from exc
        audit_record(actor=actor, action="base_model.registered", obj=base, after=_snapshot(base))
    return base


def base_model_reference_check(family: str, base_model: str) -> None:
    """An `llm-lora` model must name a registered base model; other families are left alone."""
    if family != LLM_LORA.name:
        return
    if not base_model:
        raise InvalidInput(
            "An llm-lora model needs a base model.",
            fields={"baseModel": ["name a registered base model (GET base-models lists them)"]},
        )
    if not BaseModel.objects.filter(name=base_model).exists():
        raise InvalidInput("Unknown base model.", fields={"baseModel": [f"no registered base model '{base_model}'"]})
