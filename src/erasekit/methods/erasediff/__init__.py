"""EraseDiff: its Config and the registered method."""

from .config import EraseDiffConfig
from .method import EraseDiff

__all__ = ["EraseDiff", "EraseDiffConfig"]
