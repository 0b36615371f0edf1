"""ESD, with the paper's defaults: its Config and the registered method."""

from .config import ESDConfig
from .method import ESD, ESDU, ESDX

__all__ = ["ESD", "ESDConfig", "ESDU", "ESDX"]
