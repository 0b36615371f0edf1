"""Where the toy pipelines live, and how a folder is recognised as one trained on the toy world."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnsupportedModelError

TOY_MODELS = ("toy-sd", "toy-flux")
DEFAULTS_FILE = "erasekit.json"  # a pipeline folder's generation defaults (and the toy-world mark)

# The key of erasekit.json that marks a pipeline trained on the toy world (by `erasekit toy train`).
TOY_MARKER = "toy_world"
# ... and the key that says which toy world it was trained on (absent: 1, the models trained before world v2).
WORLD_VERSION_KEY = "toy_world_version"
WORLD_VERSIONS = (1, 2)


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


def _toy_folder(name_or_path: str | Path) -> Path:
    return toy_weights_dir() / str(name_or_path) if str(name_or_path) in TOY_MODELS else Path(name_or_path).expanduser()


def toy_world_version(name_or_path: str | Path) -> int | None:
    """The toy world a toy model was trained on (``WORLD_VERSIONS``), from its erasekit.json; ``None`` for a model
    that is not a toy model. A toy model whose erasekit.json does not say is a world-v1 model."""
    if not is_toy(name_or_path):
        return None
    try:
        version = json.loads((_toy_folder(name_or_path) / DEFAULTS_FILE).read_text()).get(WORLD_VERSION_KEY, 1)
    except (OSError, ValueError, AttributeError):
        return 1
    if version not in WORLD_VERSIONS:
        raise UnsupportedModelError(
            f"{name_or_path} was trained on toy world {version!r}; this erasekit knows toy worlds "
            f"{', '.join(map(str, WORLD_VERSIONS))}"
        )
    return version
