"""The two-branch GIE sampler over a ``StableDiffusionPipeline``'s own components (§1.5–1.6).

Branch A (the plain prompt) and branch B (the target appended, under inhibition) start from the same latent.
A is only needed while B copies its attention maps: once both windows have passed, A leaves the batch and the
remaining steps cost what plain sampling costs. Each branch steps its own copy of the pipeline's scheduler, so
schedulers that keep a history (PNDM, DPM-Solver) stay correct when A leaves.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

from ...config import InvalidSettingError
from ...errors import InvalidArgumentError, UnsupportedModelError
from .attention import InhibitionState, controls, count_cross_attention_layers, install, uninstall
from .token_interval import TargetTokenError, target_token_count, token_interval

EMBEDDING_SOURCES = ("paper", "edited_prompt")


@dataclass
class ControlSettings:
    """The inference-path settings of GIE (a subset of ``GIEConfig``; the paper's where it and the released
    code differ, see ``GIEConfig``)."""

    cross_window: float = 0.8
    self_window: float = 0.4
    self_replace_max_tokens: int | None = None  # None: ≤ latent area / 16 positions (the released code: 256)
    embedding_source: str = "paper"  # or "edited_prompt" (the released code)
    allow_positive: bool = False


def check_pipeline(pipeline) -> None:
    unet = getattr(pipeline, "unet", None)
    if unet is None or not hasattr(pipeline, "tokenizer") or count_cross_attention_layers(unet) == 0:
        raise UnsupportedModelError(
            f"GIE controls the cross-attention of Stable Diffusion (1.x/2.x) UNets; {type(pipeline).__name__} "
            "has none (FLUX and other MM-DiT models are not supported)"
        )


class InhibitedSampler:
    """Generate with growth inhibitors for ``targets`` on ``pipeline`` (processors installed on demand).

    ``weights`` of a call: a float (every target token), a ``(batch, n)`` tensor, or ``None`` for the
    adapter's prediction (or ``default_scale`` when there is no adapter).
    """

    def __init__(
        self,
        pipeline,
        targets: Sequence[str],
        settings: ControlSettings | None = None,
        adapter: torch.nn.Module | None = None,
        default_scale: float | None = None,
    ):
        check_pipeline(pipeline)
        self.pipeline = pipeline
        self.targets = [t.strip() for t in targets if t and t.strip()]
        if not self.targets:
            raise TargetTokenError("GIE needs at least one target concept")
        self.target_text = " ".join(self.targets)
        self.settings = settings or ControlSettings()
        if self.settings.embedding_source not in EMBEDDING_SOURCES:
            raise InvalidSettingError(
                f"embedding_source must be one of {EMBEDDING_SOURCES}, not {self.settings.embedding_source!r}"
            )
        self.n_tokens = target_token_count(pipeline.tokenizer, self.target_text)
        self.adapter = adapter
        self.default_scale = default_scale
        self.state = InhibitionState()

    # ------------------------------------------------------------------------------------------ install

    @property
    def installed(self) -> bool:
        return controls(self.pipeline.unet, self.state)

    def install(self) -> None:
        """Drive the UNet's attention (taking over from another sampler on the same pipeline if need be)."""
        install(self.pipeline.unet, self.state)

    def remove(self) -> None:
        uninstall(self.pipeline.unet, self.state)

    @property
    def feature_size(self) -> int:
        return count_cross_attention_layers(self.pipeline.unet)

    # --------------------------------------------------------------------------------------------- text

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        embeds, _ = self.pipeline.encode_prompt(prompts, self.pipeline._execution_device, 1, False)
        return embeds

    def conditioning(self, prompts: Sequence[str]):
        """(c for branch A, c_rep for branch B, source, inserted) for ``prompts``."""
        tokenizer = self.pipeline.tokenizer
        intervals = [token_interval(tokenizer, p, self.target_text) for p in prompts]
        device = self.pipeline._execution_device
        plain = self._encode([iv.prompt for iv in intervals])
        star = self._encode([self.target_text])
        source = torch.tensor([[max(j, 0) for j in iv.source] for iv in intervals], device=device)
        inserted = torch.tensor([iv.positions for iv in intervals], device=device)
        columns = torch.arange(1, self.n_tokens + 1, device=device)
        if self.settings.embedding_source == "paper":
            # c_rep[j] = c[π(j)] at copied slots: the plain prompt's embeddings around the insertion.
            replaced = plain.gather(1, source[..., None].expand(-1, -1, plain.shape[-1])).clone()
        else:
            # The released code's variant gathers P''s own encoding c' through the alignment meant for P:
            # c_rep[j] = c'[π(j)]. Before the insertion and in the padding π(j) = j; at P''s EOT slot (e + 1),
            # π = s + 1, P's EOT position, which in P' holds the FIRST target token. So target semantics leak
            # through EOT and through the padding, which has seen the target words.
            replaced = self._encode([iv.edited_prompt for iv in intervals]).clone()
            eot = inserted[:, -1] + 1
            rows = torch.arange(len(intervals), device=device)
            replaced[rows, eot] = replaced[rows, inserted[:, 0]]
        replaced.scatter_(
            1,
            inserted[..., None].expand(-1, -1, plain.shape[-1]),
            star[:, columns].expand(len(intervals), -1, -1).to(replaced.dtype),
        )
        return plain, replaced, source, inserted, star, columns

    # --------------------------------------------------------------------------------------------- call

    def _size(self, height, width) -> tuple[int, int]:
        """The requested image size, or the UNet's native one (as the pipeline defaults it)."""
        native = self.pipeline.unet.config.sample_size * self.pipeline.vae_scale_factor
        return height or native, width or native

    def _latents(self, batch, height, width, generator):
        p = self.pipeline
        return p.prepare_latents(
            batch, p.unet.config.in_channels, height, width, p.unet.dtype, p._execution_device, generator
        )

    def _resolve_weights(self, weights, batch, features_fn) -> torch.Tensor:
        device = self.pipeline._execution_device
        if weights is None and self.adapter is None:
            if self.default_scale is None:
                raise InvalidArgumentError("GIE needs a suppression scale: give an adapter or a fixed scale")
            weights = self.default_scale
        if weights is None:
            with torch.no_grad():
                adapter_device = next(self.adapter.parameters()).device
                weights = self.adapter(features_fn().to(adapter_device)).squeeze(-1).to(device)
        elif not isinstance(weights, torch.Tensor):
            weights = torch.full((batch, self.n_tokens), float(weights), device=device)
        weights = weights.to(device=device, dtype=torch.float32)
        if weights.shape != (batch, self.n_tokens):
            raise ValueError(f"weights must have shape {(batch, self.n_tokens)}, got {tuple(weights.shape)}")
        if not self.settings.allow_positive:
            # A positive weight would add the concept instead of inhibiting it.
            weights = weights.clamp(max=0.0)
        return weights

    def _prime(self, plain, replaced, source, inserted, star, columns, batch, with_uncond, latents_shape, steps):
        """Set the whole control for a call of ``steps`` steps: the feature pass (step 0) runs under it too, so
        its features never depend on what an earlier call left in the state."""
        s = self.state
        s.batch, s.with_uncond, s.source, s.inserted = batch, with_uncond, source, inserted
        s.copied = torch.ones_like(source, dtype=torch.bool).scatter_(1, inserted, False)
        s.target_embeds, s.target_columns = star, columns
        s.n_cross = int(self.settings.cross_window * (steps + 1))
        s.n_self = int(self.settings.self_window * steps)
        tokens = latents_shape[-1] * latents_shape[-2]
        # None: the coarse levels, ≤ latent area / 16 (16² and 8² for SD 1.x at 512 px, the paper's setting);
        # a number: that many query positions at most (the released code: 256, at any resolution).
        s.self_max_tokens = self.settings.self_replace_max_tokens or max(1, tokens // 16)

    @torch.no_grad()
    def features(self, prompt, generator=None, height=None, width=None, num_inference_steps=None) -> torch.Tensor:
        """The adapter's input for each prompt: ``(batch, n_tokens, n_cross_attention_layers)``."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        p = self.pipeline
        height, width = self._size(height, width)
        cond = self.conditioning(prompts)
        latents = self._latents(len(prompts), height, width, generator)
        scheduler = copy.deepcopy(p.scheduler)
        scheduler.set_timesteps(num_inference_steps or 50, device=p._execution_device)
        return self._feature_pass(cond, latents, scheduler, len(prompts))

    def _feature_pass(self, cond, latents, scheduler, batch) -> torch.Tensor:
        plain, replaced, *_ = cond
        self._prime(*cond, batch=batch, with_uncond=False, latents_shape=latents.shape, steps=len(scheduler.timesteps))
        t0 = scheduler.timesteps[0]
        x = scheduler.scale_model_input(torch.cat([latents, latents]), t0)
        self.install()
        s = self.state
        s.mode, s.features = "features", []
        s.weights = torch.ones(batch, self.n_tokens, device=latents.device)
        try:
            self.pipeline.unet(x, t0, encoder_hidden_states=torch.cat([plain, replaced]), return_dict=False)
        finally:
            s.mode = "off"
        features = torch.stack(s.features, dim=-1)  # (batch, n, layers)
        s.features = []
        return features

    @torch.no_grad()
    def __call__(
        self,
        prompt,
        generator=None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        negative_prompt=None,
        output_type="pil",
        weights=None,
        return_plain: bool = False,
        **unused,
    ):
        """Like ``StableDiffusionPipeline.__call__``; returns branch B's images (and A's with ``return_plain``
        as ``.plain_images``)."""
        if unused.get("latents") is not None or unused.get("prompt_embeds") is not None:
            raise ValueError("GIE builds its own latents and prompt embeddings; pass prompts and generators")
        p = self.pipeline
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts)
        height, width = self._size(height, width)
        device = p._execution_device
        with_uncond = guidance_scale > 1.0

        cond = self.conditioning(prompts)
        plain, replaced = cond[0], cond[1]
        latents = self._latents(batch, height, width, generator)
        sched_a, sched_b = copy.deepcopy(p.scheduler), copy.deepcopy(p.scheduler)
        for sched in (sched_a, sched_b):
            sched.set_timesteps(num_inference_steps, device=device)
        timesteps = sched_b.timesteps

        w = self._resolve_weights(weights, batch, lambda: self._feature_pass(cond, latents, sched_b, batch))
        self._prime(*cond, batch=batch, with_uncond=with_uncond, latents_shape=latents.shape, steps=len(timesteps))
        s = self.state
        s.weights = w
        keep_a = max(s.n_cross, s.n_self)
        if with_uncond:
            negatives = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt or ""] * batch
            uncond = self._encode(negatives)
        extra = p.prepare_extra_step_kwargs(None, 0.0)
        lat_a, lat_b = latents, latents.clone()
        self.install()
        try:
            for i, t in enumerate(timesteps):
                two = i < keep_a or return_plain
                s.step, s.mode = i, ("control" if i < keep_a else "off")
                parts, embeds = ([lat_a, lat_b] if two else [lat_b]), ([plain, replaced] if two else [replaced])
                if with_uncond:
                    parts, embeds = parts + parts, [uncond] * len(embeds) + embeds
                x = torch.cat(parts)
                x = sched_b.scale_model_input(x, t)
                pred = p.unet(x, t, encoder_hidden_states=torch.cat(embeds), return_dict=False)[0]
                if with_uncond:
                    pred_uncond, pred_cond = pred.chunk(2)
                    pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
                if two:
                    pred_a, pred_b = pred.chunk(2)
                    lat_a = sched_a.step(pred_a, t, lat_a, **extra, return_dict=False)[0]
                else:
                    pred_b = pred
                lat_b = sched_b.step(pred_b, t, lat_b, **extra, return_dict=False)[0]
        finally:
            s.mode = "off"
        images = self._decode(lat_b, output_type)
        out = StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)
        if return_plain:
            out.plain_images = self._decode(lat_a, output_type)
        out.weights = w.cpu()
        return out

    def _decode(self, latents, output_type):
        p = self.pipeline
        if output_type == "latent":
            return latents
        image = p.vae.decode(latents / p.vae.config.scaling_factor, return_dict=False)[0]
        return p.image_processor.postprocess(image, output_type=output_type, do_denormalize=[True] * image.shape[0])
