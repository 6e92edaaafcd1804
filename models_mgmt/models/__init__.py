from .ai_model import AIModel
from .audit import AuditEvent
from .dataset import Bar, Dataset
from .progress_event import ProgressEvent
from .training_job import TrainingEpoch, TrainingJob
from .version import ModelVersion

__all__ = ["AIModel", "AuditEvent", "Bar", "Dataset", "ModelVersion", "ProgressEvent", "TrainingEpoch", "TrainingJob"]
