"""The ``Backbone``: one set of verbs over a diffusers text-to-image pipeline, whatever its family.

Erasure methods talk to a model only through these verbs (encode a prompt, predict the denoiser's output,
take one sampler step under autograd, decode, add training noise, name groups of parameters), so that the same
method code runs on Stable Diffusion's UNet and on FLUX's transformer.

Conventions shared by every family:

* Latents are always in the *unpacked* image layout ``(B, C, h, w)`` — FLUX packs and unpacks inside.
* ``t`` is in the family's native unit: the discrete training timestep in ``[0, num_train_timesteps)`` for
  Stable Diffusion, the noise level ``sigma`` in ``[0, 1]`` for FLUX (``x_t = (1 - sigma) x0 + sigma noise``).
  ``SamplerState.t`` and ``random_timesteps`` give values in that unit.
* Images are float tensors in ``[0, 1]``, ``(B, 3, H, W)``.
* Nothing here switches autograd off except ``sample`` (a convenience for inference); wrap calls in
  ``torch.no_grad()`` where no gradient is needed.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..toy.weights import is_toy, toy_world_version

# Names of the parameter groups every backbone defines, in the order ``module_groups`` returns them.
GROUP_NAMES = ("xattn", "noxattn", "noxattn_all", "ffn", "norm_modulation", "full")


@dataclass
class GenerationDefaults:
    """How a model generates when the caller does not say: read from ``erasekit.json`` or the model's config."""

    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    # FLUX's T5 sequence length; ``None`` for families whose text length is fixed by the tokenizer (SD: 77).
    max_sequence_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Conditioning:
    """The text conditioning of a batch of prompts, as the denoiser consumes it.

    Attributes:
        embeds: per-token embeddings ``(B, L, D)`` — CLIP's last hidden state for SD (L = 77), T5's for FLUX.
        pooled: pooled prompt embedding ``(B, D')`` (FLUX: CLIP's pooled output); ``None`` for SD.
        text_ids: positional ids of the text tokens ``(L, 3)`` (FLUX's RoPE); ``None`` for SD. Shared by the
            whole batch, so indexing and concatenation keep it as is.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    text_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def __getitem__(self, index) -> Conditioning:
        # An integer index keeps the batch dimension, so the result is still a valid (batch of one) conditioning.
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Conditioning(self.embeds[index], None if self.pooled is None else self.pooled[index], self.text_ids)

    def cat(self, *others: Conditioning) -> Conditioning:
        """Concatenate along the batch, e.g. ``uncond.cat(cond)`` for a classifier-free-guidance batch."""
        parts = (self, *others)
        for other in others:
            if (other.pooled is None) != (self.pooled is None):
                raise ValueError("Cannot concatenate conditionings of different families (one has `pooled`).")
            if other.embeds.shape[1:] != self.embeds.shape[1:]:
                raise ValueError(
                    f"Cannot concatenate conditionings of shapes {tuple(self.embeds.shape)} and "
                    f"{tuple(other.embeds.shape)}: encode them with the same sequence length."
                )
        pooled = None if self.pooled is None else torch.cat([p.pooled for p in parts])
        return Conditioning(torch.cat([p.embeds for p in parts]), pooled, self.text_ids)

    def repeat(self, n: int) -> Conditioning:
        """Repeat each prompt ``n`` times in place (``[a, b] -> [a]*n + [b]*n``), as ``num_images_per_prompt``."""
        pooled = None if self.pooled is None else self.pooled.repeat_interleave(n, dim=0)
        return Conditioning(self.embeds.repeat_interleave(n, dim=0), pooled, self.text_ids)

    def expand_to(self, batch_size: int) -> Conditioning:
        """Broadcast a batch of one to ``batch_size``; a batch of the right size is returned as is."""
        if len(self) == batch_size:
            return self
        if len(self) != 1:
            raise ValueError(f"Conditioning has batch {len(self)}, which does not match the latents' {batch_size}.")
        return self.repeat(batch_size)

    def to(self, device=None, dtype=None) -> Conditioning:
        def move(x):
            return None if x is None else x.to(device=device, dtype=dtype)

        return Conditioning(move(self.embeds), move(self.pooled), move(self.text_ids))

    def detach(self) -> Conditioning:
        def det(x):
            return None if x is None else x.detach()

        return Conditioning(det(self.embeds), det(self.pooled), det(self.text_ids))


@dataclass
class SamplerState:
    """Where a step-wise sampling run stands. ``Backbone.step`` returns a new state and never mutates this one.

    Attributes:
        latents: current noisy latents ``(B, C, h, w)``, part of the autograd graph if the steps were.
        timesteps: the run's timesteps in the scheduler's units (SD: integer DDPM steps; FLUX: ``sigma * 1000``).
        index: how many steps have been taken; ``timesteps[index]`` is the next one.
        scheduler: a private, configured copy of the pipeline's scheduler, read for its constants only.
        sigmas: FLUX only: the noise levels, one more than ``timesteps`` (ending at 0).
        height, width: the image size in pixels that ``decode`` will produce.
        prediction: the (guided) denoiser output of the last step, or ``None`` before the first.
        denoised: the model's estimate of the clean latents at the last step, or ``None`` before the first.
    """

    latents: torch.Tensor
    timesteps: list
    index: int = 0
    scheduler: Any = None
    sigmas: list | None = None
    height: int = 0
    width: int = 0
    prediction: torch.Tensor | None = None
    denoised: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.index >= len(self.timesteps)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def replace(self, **changes) -> SamplerState:
        return dataclasses.replace(self, **changes)


class Backbone(abc.ABC):
    """A thin adapter over a diffusers pipeline giving every erasure method the same verbs.

    Subclasses: :class:`~erasekit.models.sd.SDBackbone`, :class:`~erasekit.models.flux.FluxBackbone`.
    Build one with :func:`erasekit.models.load` or :func:`erasekit.models.from_pipeline`.

    Attributes:
        family: ``"sd"`` or ``"flux"``.
        pipeline: the wrapped diffusers pipeline; its modules are shared, not copied, so edits to the
            denoiser show up in ``pipeline(...)`` as well.
        name_or_path: what the model was loaded from (a toy name, a folder, a hub id, or a given name).
        defaults: the model's :class:`GenerationDefaults`.
    """

    family: str = ""

    def __init__(self, pipeline, name_or_path: str = "", defaults: GenerationDefaults | None = None):
        self.pipeline = pipeline
        self.name_or_path = str(name_or_path)
        self.defaults = defaults if defaults is not None else self.fallback_defaults(toy=False)
        # Progress bars of the wrapped pipeline would interleave with ours.
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)

    @property
    def is_toy(self) -> bool:
        """Whether this is a toy-world model (a shipped toy model, or a folder marked by the toy trainer)."""
        return is_toy(self.name_or_path)

    @property
    def toy_world_version(self) -> int | None:
        """The toy world a toy model was trained on (1 or 2); ``None`` for a model that is not a toy model."""
        return toy_world_version(self.name_or_path)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, prediction_type={self.prediction_type!r}, "
            f"device={self.device}, dtype={self.dtype})"
        )

    # ----------------------------------------------------------------------------------- basic properties

    @property
    @abc.abstractmethod
    def denoiser(self) -> nn.Module:
        """The network that ``predict`` runs: ``pipeline.unet`` (SD) or ``pipeline.transformer`` (FLUX)."""

    @property
    @abc.abstractmethod
    def prediction_type(self) -> str:
        """``"epsilon"``, ``"v_prediction"`` or ``"flow"`` (velocity ``noise - x0``)."""

    @property
    @abc.abstractmethod
    def tokenizer(self):
        """The tokenizer whose tokens index ``Conditioning.embeds`` (CLIP for SD, T5 for FLUX)."""

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def vae_scale_factor(self) -> int:
        return self.pipeline.vae_scale_factor

    def to(self, device=None, dtype=None) -> Backbone:
        """Move every module of the pipeline; returns ``self``."""
        self.pipeline.to(device=device, dtype=dtype)
        return self

    def freeze(self) -> Backbone:
        """Stop gradients to every module of the pipeline, text encoders and VAE included; returns ``self``."""
        for component in self.pipeline.components.values():
            if isinstance(component, nn.Module):
                component.requires_grad_(False)
        return self

    @classmethod
    @abc.abstractmethod
    def fallback_defaults_for(cls, pipeline, toy: bool) -> GenerationDefaults:
        """Generation defaults from the pipeline's own config, used when the model folder has no erasekit.json."""

    def fallback_defaults(self, toy: bool) -> GenerationDefaults:
        return self.fallback_defaults_for(self.pipeline, toy)

    # ---------------------------------------------------------------------------------------------- text

    def tokenize(self, prompts: Sequence[str] | str) -> torch.Tensor:
        """Token ids ``(B, L)`` exactly as ``encode`` feeds them to the per-token text encoder."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.tokenizer(
            prompts, padding="max_length", max_length=self.text_length, truncation=True, return_tensors="pt"
        ).input_ids

    @property
    @abc.abstractmethod
    def text_length(self) -> int:
        """Length ``L`` of ``Conditioning.embeds`` (77 for SD's CLIP; ``max_sequence_length`` for FLUX's T5)."""

    def token_layout(self, prompt: str) -> list[str]:
        """The tokens of ``prompt`` as the per-token text encoder sees them, special tokens included.

        Position ``i`` of the list is position ``i`` of ``encode([prompt]).embeds[0]``; padding after the last
        listed token is left out.
        """
        ids = self.tokenizer(prompt, truncation=True, max_length=self.text_length).input_ids
        return self.tokenizer.convert_ids_to_tokens(ids)

    @abc.abstractmethod
    def encode(self, prompts: Sequence[str] | str) -> Conditioning:
        """Encode prompts into the denoiser's text conditioning (under autograd if enabled)."""

    # ------------------------------------------------------------------------------------------ denoiser

    @abc.abstractmethod
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, denoiser: nn.Module | None = None) -> torch.Tensor:
        """The denoiser's output for ``latents`` at ``t``: noise (ε), v, or the flow velocity.

        Args:
            latents: ``(B, C, h, w)`` noisy latents.
            t: a number or a ``(B,)`` tensor in the family's native unit (see the module docstring).
            cond: conditioning with batch ``B`` or 1 (broadcast).
            denoiser: run this module instead of ``self.denoiser`` — e.g. a frozen teacher copy
                (``copy.deepcopy(backbone.denoiser)``) — with the same call convention.
        """

    @abc.abstractmethod
    def random_timesteps(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniformly drawn training timesteps ``(B,)`` in the family's native unit."""

    @abc.abstractmethod
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """The training-time forward process ``q(x_t | x0)`` at ``t`` (a number or a ``(B,)`` tensor)."""

    @abc.abstractmethod
    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """What ``predict`` should output for ``add_noise(x0, noise, t)``: noise, v, or ``noise - x0``."""

    # ------------------------------------------------------------------------------------------- sampler

    @abc.abstractmethod
    def prepare(
        self,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        height: int | None = None,
        width: int | None = None,
        latents: torch.Tensor | None = None,
    ) -> SamplerState:
        """Draw the initial noise and the timestep schedule, as the family's pipeline would.

        A list of generators gives each image its own generator (so an image does not depend on its
        batch-mates), exactly like ``pipeline(..., generator=[...])``. ``latents`` skips the draw.
        """

    @abc.abstractmethod
    def step(
        self,
        state: SamplerState,
        cond: Conditioning,
        uncond: Conditioning | None = None,
        guidance_scale: float | None = None,
    ) -> SamplerState:
        """One deterministic denoising step, differentiable w.r.t. the latents and the denoiser's parameters.

        Classifier-free guidance ``u + g (c - u)`` is applied when ``uncond`` is given and the guidance scale
        (``guidance_scale``, else ``defaults.guidance_scale``) is not 1.
        """

    def _guidance(self, uncond: Conditioning | None, guidance_scale: float | None) -> float | None:
        """The guidance scale to apply, or ``None`` for a plain conditional step."""
        if uncond is None:
            if guidance_scale is not None and guidance_scale != 1.0:
                raise InvalidArgumentError(
                    f"guidance_scale={guidance_scale} needs an unconditional (or negative) conditioning: pass "
                    "`uncond=backbone.encode([''] * batch_size)`."
                )
            return None
        scale = self.defaults.guidance_scale if guidance_scale is None else float(guidance_scale)
        return None if scale == 1.0 else scale

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, h, w)`` to images ``(B, 3, H, W)`` in ``[0, 1]`` (under autograd if enabled)."""

    @abc.abstractmethod
    def encode_images(
        self, images: torch.Tensor, generator: torch.Generator | None = None, mode: bool = False
    ) -> torch.Tensor:
        """Images in ``[0, 1]`` to scaled latents, the inverse of ``decode``.

        Draws from the VAE posterior like diffusers' training scripts; ``mode=True`` takes its mode instead.
        """

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str] | str,
        seeds: int | Sequence[int] = 0,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Generate float32 images ``(B, 3, H, W)`` in ``[0, 1]`` with the step-wise sampler (no gradients).

        Args:
            prompts: one prompt or a list.
            seeds: one seed per prompt, or a single seed used for every prompt (all images then start from the
                same noise, which is what comparing two prompts in lock-step needs).
            negative_prompt: replaces the empty prompt of classifier-free guidance; needs a guidance scale > 1.
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        generators = make_generators(seeds, len(prompts))
        scale = self.defaults.guidance_scale if guidance_scale is None else float(guidance_scale)
        # Like the pipelines, guidance only runs above 1 (the unconditional pass would be wasted otherwise).
        uncond = None
        if scale > 1.0:
            negatives = negative_prompt if negative_prompt is not None else ""
            negatives = [negatives] * len(prompts) if isinstance(negatives, str) else list(negatives)
            uncond = self.encode(negatives)
        elif negative_prompt is not None:
            raise InvalidArgumentError(f"negative_prompt needs guidance_scale > 1, but it is {scale}.")
        cond = self.encode(prompts)
        state = self.prepare(len(prompts), generators, num_inference_steps, height, width)
        while not state.done:
            state = self.step(state, cond, uncond, scale if uncond is not None else None)
        # Callers (metrics, image writers) expect float32 whatever dtype the model runs in.
        return self.decode(state.latents).float()

    # -------------------------------------------------------------------------------------- attention

    def attention_processors(self) -> dict[str, Any]:
        """The denoiser's attention processors by name (``"<module path>.processor"``), as in diffusers."""
        return self.denoiser.attn_processors

    def set_attention_processors(self, processors: dict[str, Any] | Any) -> None:
        """Install processors: a dict with every name of ``attention_processors()``, or one for all."""
        # diffusers pops the entries out of the dict it is given; leave the caller's dict intact.
        if isinstance(processors, dict):
            processors = dict(processors)
        self.denoiser.set_attn_processor(processors)

    @abc.abstractmethod
    def cross_attention_layers(self) -> list[str]:
        """Names of the modules where text conditions the image, in the order a forward pass calls them."""

    # ------------------------------------------------------------------------------------ module groups

    @abc.abstractmethod
    def _group_predicates(self) -> dict[str, Any]:
        """``{"xattn": pred, "ffn": pred, "norm_modulation": pred}`` over parameter names of the denoiser."""

    def module_groups(self) -> dict[str, list[str]]:
        """Parameter names of the denoiser by group.

        ``xattn`` and ``noxattn_all`` (every parameter outside cross-attention) partition ``full``; ``noxattn`` is
        the scope the official ESD and EraseDiff scripts train as "noxattn", ``noxattn_all`` less what the family's
        ``_noxattn_excluded`` names (SD: the time embedding and the output layers); ``ffn`` and
        ``norm_modulation`` are subsets of ``full`` (see the family's docstring for what each holds).
        """
        predicates = self._group_predicates()
        names = [name for name, _ in self.denoiser.named_parameters()]
        groups = {key: [n for n in names if predicates[key](n)] for key in ("xattn", "ffn", "norm_modulation")}
        xattn = set(groups["xattn"])
        groups["noxattn_all"] = [n for n in names if n not in xattn]
        groups["noxattn"] = [n for n in groups["noxattn_all"] if not self._noxattn_excluded(n)]
        groups["full"] = names
        return {key: groups[key] for key in GROUP_NAMES}

    def _noxattn_excluded(self, name: str) -> bool:
        """Whether ``noxattn`` leaves out this parameter of ``noxattn_all`` (the family's docstring says which and
        why); none by default."""
        return False

    def parameters_of(self, group: str) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` pairs of the denoiser in ``group`` (one of ``GROUP_NAMES``)."""
        groups = self.module_groups()
        if group not in groups:
            raise InvalidArgumentError(f"Unknown module group {group!r}; choose one of {', '.join(GROUP_NAMES)}.")
        wanted = set(groups[group])
        return [(name, p) for name, p in self.denoiser.named_parameters() if name in wanted]


def make_generators(seeds: int | Sequence[int], batch_size: int) -> list[torch.Generator]:
    """One CPU generator per image, so that image ``i`` depends only on its own seed (as in diffusers)."""
    if isinstance(seeds, int):
        seeds = [seeds] * batch_size
    seeds = list(seeds)
    if len(seeds) != batch_size:
        raise InvalidArgumentError(
            f"Got {len(seeds)} seeds for {batch_size} prompts; pass one seed per prompt or a single int."
        )
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def as_timestep_tensor(t, batch_size: int, device, dtype) -> torch.Tensor:
    """``t`` (number, 0-d or ``(B,)`` tensor) as a ``(B,)`` tensor."""
    t = torch.as_tensor(t, device=device, dtype=dtype)
    if t.ndim == 0:
        t = t.expand(batch_size)
    if t.shape != (batch_size,):
        raise ValueError(f"t must be a number or have shape ({batch_size},), got {tuple(t.shape)}.")
    return t


def broadcast_to(coefficient: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample coefficients ``(B,)`` so that they broadcast against ``x`` ``(B, ...)``."""
    return coefficient.reshape(-1, *([1] * (x.ndim - 1)))
