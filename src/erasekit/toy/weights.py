"""Where the toy pipelines live, and how a folder is recognised as one trained on the toy world."""

from __future__ import annotations

import json
from pathlib import Path

TOY_MODELS = ("toy-sd", "toy-flux")
DEFAULTS_FILE = "erasekit.json"  # a pipeline folder's generation defaults (and the toy-world mark)

# The key of erasekit.json that marks a pipeline trained on the toy world (by `erasekit toy train`).
TOY_MARKER = "toy_world"


def toy_weights_dir() -> Path:
    """Where ``erasekit toy train`` writes the toy pipelines, inside the installed package."""
    return Path(__file__).resolve().parent / "weights"


def is_toy(name_or_path: str | Path) -> bool:
    """Whether a model name or folder is a toy-world model (what it would load as, without loading it)."""
    return str(name_or_path) in TOY_MODELS or is_toy_folder(name_or_path)


def is_toy_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a toy-world pipeline: a shipped one, or one whose erasekit.json marks it."""
    folder = Path(folder).expanduser()
    if folder.resolve().parent == toy_weights_dir():
        return True
    path = folder / DEFAULTS_FILE
    try:
        return path.is_file() and json.loads(path.read_text()).get(TOY_MARKER) is True
    except (OSError, ValueError, AttributeError):
        return False
