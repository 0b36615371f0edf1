"""The fine-tuning engine shared by the weight-changing erasure methods."""

from .engine import FineTuner, ResumeMismatchError, TrainingDivergedError
from .settings import FineTuneSettings

__all__ = ["FineTuneSettings", "FineTuner", "ResumeMismatchError", "TrainingDivergedError"]
