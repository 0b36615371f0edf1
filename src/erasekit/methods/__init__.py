"""Erasure methods, each registered under the name users pass to ``erasekit erase --method``."""

from . import abo, erasediff, esd, gie, mce, negprompt  # noqa: F401  (registers the methods)
from .base import EraseRequest, Method, available_methods, get_method, register

__all__ = ["EraseRequest", "Method", "available_methods", "get_method", "register"]
