"""Erasure methods, each registered under the name users pass to ``erasekit erase --method``."""

from . import negprompt  # noqa: F401  (registers the method)
from .base import EraseRequest, Method, available_methods, get_method, register

__all__ = ["EraseRequest", "Method", "available_methods", "get_method", "register"]
