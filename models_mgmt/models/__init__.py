from .ai_model import AIModel
from .audit import AuditEvent
from .base_model import BaseModel
from .cost import JobCost, PriceCard
from .dataset import Bar, Dataset
from .experiment import Experiment
from .guardrail import GuardrailEvaluation, GuardrailPolicy
from .monitoring import Alert, DriftReport, Prediction
from .progress_event import ProgressEvent
from .study import Study, StudyTrial
from .training_job import TrainingEpoch, TrainingJob
from .version import ModelVersion

__all__ = [
    "AIModel",
    "Alert",
    "AuditEvent",
    "Bar",
    "BaseModel",
    "Dataset",
    "DriftReport",
    "Experiment",
    "GuardrailEvaluation",
    "GuardrailPolicy",
    "JobCost",
    "ModelVersion",
    "Prediction",
    "PriceCard",
    "ProgressEvent",
    "Study",
    "StudyTrial",
    "TrainingEpoch",
    "TrainingJob",
]
