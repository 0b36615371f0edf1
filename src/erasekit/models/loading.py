"""Turn a model name into a :class:`Backbone`: a toy model, a local diffusers folder, or a hub id."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import torch
from diffusers import FluxPipeline, StableDiffusionPipeline

from ..errors import ModelNotFoundError, UnsupportedModelError
from ..toy import architectures as _toy_architectures  # noqa: F401  (the toy FLUX class a pipeline folder names)
from ..toy import weights as toy_weights
from ..toy.weights import DEFAULTS_FILE, TOY_MARKER, TOY_MODELS, WORLD_VERSION_KEY, is_toy_folder, toy_weights_dir
from .base import Backbone, GenerationDefaults
from .flux import FluxBackbone
from .sd import SDBackbone

logger = logging.getLogger(__name__)


# model_index.json `_class_name` -> (pipeline class, backbone class).
_FAMILIES = {
    "StableDiffusionPipeline": (StableDiffusionPipeline, SDBackbone),
    "FluxPipeline": (FluxPipeline, FluxBackbone),
}
# An "owner/name" hub id (the hub's own character set).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load(
    name_or_path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Backbone:
    """Load a text-to-image pipeline as a :class:`Backbone`.

    Args:
        name_or_path: one of
            * a toy model name, ``"toy-sd"`` or ``"toy-flux"`` (shipped with the package, or made by
              ``erasekit toy train``);
            * a local diffusers folder (with ``model_index.json``) — never touches the network;
            * a hub id such as ``"CompVis/stable-diffusion-v1-4"`` — needs the hub or its local cache.
        device: where to put the modules; default CUDA when available, else CPU.
        dtype: the modules' dtype.

    Raises:
        ModelNotFoundError: the toy model is not trained yet, the folder does not exist or is not a diffusers
            pipeline, or the hub id cannot be fetched.
        UnsupportedModelError: the pipeline's class is not one erasekit supports.
    """
    name = str(name_or_path)
    device = torch.device(device) if device is not None else _default_device()
    if name in TOY_MODELS or (name.startswith("toy-") and not Path(name).exists()):
        folder = _toy_folder(name)
        pipeline, backbone_cls = _load_folder(folder, dtype)
        toy = True
    elif Path(name).expanduser().exists():
        folder = Path(name).expanduser()
        pipeline, backbone_cls = _load_folder(folder, dtype)
        toy = is_toy_folder(folder)
    elif _HUB_ID.match(name):
        folder = None
        pipeline, backbone_cls = _load_hub(name, dtype)
        toy = False
    else:
        raise ModelNotFoundError(
            f"No model {name!r}: it is not a toy model ({', '.join(TOY_MODELS)}), an existing folder, "
            "or a hub id of the form 'owner/name'."
        )
    pipeline.to(device)
    defaults = _read_defaults(folder, backbone_cls.fallback_defaults_for(pipeline, toy))
    return backbone_cls(pipeline, name, defaults)


def from_pipeline(pipeline, name: str = "pipeline", defaults: GenerationDefaults | None = None) -> Backbone:
    """Wrap an already built pipeline (its modules are shared, not copied).

    ``defaults`` default to the family's, from the pipeline's config (toy-world ones if ``name`` is a toy name).
    """
    for pipeline_cls, backbone_cls in _FAMILIES.values():
        if isinstance(pipeline, pipeline_cls):
            if defaults is None:
                defaults = backbone_cls.fallback_defaults_for(pipeline, toy=name in TOY_MODELS)
            return backbone_cls(pipeline, name, defaults)
    raise UnsupportedModelError(
        f"{type(pipeline).__name__} is not supported; erasekit supports "
        f"{', '.join(_FAMILIES)} (SDXL and SD3 are planned)."
    )


# --------------------------------------------------------------------------------------------- helpers


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _toy_folder(name: str) -> Path:
    if name not in TOY_MODELS:
        raise ModelNotFoundError(f"No toy model {name!r}; the toy models are {', '.join(TOY_MODELS)}.")
    folder = toy_weights_dir() / name
    if not (folder / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"The toy model {name!r} has not been trained yet (no weights in {folder}). "
            "Run `erasekit toy train` to make it."
        )
    return folder


def _family_of(class_name: str | None, where: str):
    if class_name not in _FAMILIES:
        raise UnsupportedModelError(
            f"{where} is a {class_name or 'pipeline of unknown class'}; erasekit supports "
            f"{', '.join(_FAMILIES)} (SDXL and SD3 are planned)."
        )
    return _FAMILIES[class_name]


def _pipeline_kwargs(pipeline_cls) -> dict:
    # The safety checker blacks out images; erasure is measured on what the model actually draws.
    if pipeline_cls is StableDiffusionPipeline:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def _load_folder(folder: Path, dtype: torch.dtype):
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelNotFoundError(
            f"{folder} is not a diffusers pipeline folder (no model_index.json). Pass a folder written by "
            "`pipeline.save_pretrained(...)`, a toy model name, or a hub id."
        )
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except json.JSONDecodeError as err:
        raise ModelNotFoundError(f"{index} is not valid JSON: {err}.") from err
    pipeline_cls, backbone_cls = _family_of(class_name, str(folder))
    pipeline = pipeline_cls.from_pretrained(
        folder, dtype=dtype, local_files_only=True, **_pipeline_kwargs(pipeline_cls)
    )
    return pipeline, backbone_cls


def _load_hub(repo_id: str, dtype: torch.dtype):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        # model_index.json first: an unsupported family fails before gigabytes are downloaded.
        index = hf_hub_download(repo_id, "model_index.json")
    except RepositoryNotFoundError as err:
        raise ModelNotFoundError(f"No model {repo_id!r} on the Hugging Face hub (or it is private).") from err
    except Exception as err:  # noqa: BLE001 — offline mode, no network, timeouts, missing cache all end here
        raise ModelNotFoundError(
            f"Cannot fetch {repo_id!r}: the Hugging Face hub is unreachable ({type(err).__name__}) and the model "
            "is not in the local cache; pass a local diffusers folder instead."
        ) from err
    class_name = json.loads(Path(index).read_text()).get("_class_name")
    pipeline_cls, backbone_cls = _family_of(class_name, repo_id)
    try:
        pipeline = pipeline_cls.from_pretrained(repo_id, dtype=dtype, **_pipeline_kwargs(pipeline_cls))
    except OSError as err:
        raise ModelNotFoundError(
            f"Cannot fetch the weights of {repo_id!r}: the Hugging Face hub is unreachable or the download failed "
            f"({err}); pass a local diffusers folder instead."
        ) from err
    return pipeline, backbone_cls


def _read_defaults(folder: Path | None, fallback: GenerationDefaults) -> GenerationDefaults:
    """``fallback`` overridden by the keys of ``<folder>/erasekit.json``, if there is one."""
    path = folder / DEFAULTS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return fallback
    values = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(GenerationDefaults)}
    unknown = sorted(set(values) - known - {TOY_MARKER, WORLD_VERSION_KEY})
    if unknown:
        logger.warning("%s: ignoring keys %s (generation defaults are %s).", path, unknown, sorted(known))
    return dataclasses.replace(fallback, **{k: v for k, v in values.items() if k in known})


def is_toy(model: Backbone | str | Path) -> bool:
    """Whether ``model`` (a Backbone, or the name or folder it would be loaded from) is a toy-world model."""
    return model.is_toy if isinstance(model, Backbone) else toy_weights.is_toy(model)


def toy_world_version(model: Backbone | str | Path) -> int | None:
    """The toy world ``model`` was trained on (1 or 2), or ``None`` when it is not a toy model."""
    return model.toy_world_version if isinstance(model, Backbone) else toy_weights.toy_world_version(model)


def family_of(pipeline) -> str:
    """The family (``"sd"``, ``"flux"``) of a pipeline, by the same table ``load`` uses; else its class name."""
    for pipeline_cls, backbone_cls in _FAMILIES.values():
        if isinstance(pipeline, pipeline_cls):
            return backbone_cls.family
    return type(pipeline).__name__
