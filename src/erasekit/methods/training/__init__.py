"""The fine-tuning engine shared by the weight-changing erasure methods, and the one checkpoint format (and resume
rule) of every training method."""

from .checkpoint import CHECKPOINT_DIR, ResumeMismatchError, TrainingCheckpoint, run_identity
from .engine import FineTuner, TrainingDivergedError
from .settings import FineTuneSettings

__all__ = [
    "CHECKPOINT_DIR",
    "FineTuneSettings",
    "FineTuner",
    "ResumeMismatchError",
    "TrainingCheckpoint",
    "TrainingDivergedError",
    "run_identity",
]
