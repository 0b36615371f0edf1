"""Erasure methods, each registered under the name users pass to ``erasekit erase --method``."""

from . import abo, erasediff, esd, gie, mce, negprompt, sld, uce  # noqa: F401  (registers the methods)
from .apply import apply_edit, load_edits, load_model, remove_edit
from .base import EraseRequest, Method, available_methods, get_method, register

__all__ = [
    "EraseRequest",
    "Method",
    "apply_edit",
    "available_methods",
    "get_method",
    "load_edits",
    "load_model",
    "register",
    "remove_edit",
]
