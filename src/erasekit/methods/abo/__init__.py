"""All-but-One (a reconstruction: its Config and the registered method."""

from .config import ABOConfig
from .method import AllButOne

__all__ = ["ABOConfig", "AllButOne"]
