"""Writes. Every state change of the product happens in one function here, atomically, audited."""

from models_mgmt.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError, Unavailable

from .ai_models import ai_model_access_set, ai_model_create, ai_model_delete, ai_model_update
from .datasets import dataset_bars_append, dataset_create_from_csv, dataset_import_builtin
from .training_jobs import training_job_start, training_job_stop, training_job_transition
from .versions import model_version_activate

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "ServiceError",
    "Unavailable",
    "ai_model_access_set",
    "ai_model_create",
    "ai_model_delete",
    "ai_model_update",
    "dataset_bars_append",
    "dataset_create_from_csv",
    "dataset_import_builtin",
    "model_version_activate",
    "training_job_start",
    "training_job_stop",
    "training_job_transition",
]
