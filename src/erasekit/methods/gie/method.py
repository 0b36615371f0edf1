"""GIE — Growth Inhibitors for Erasure (Die Chen et al., ICLR 2025; arXiv 2408.01014). Inference-time.

Branch B's prompt is the user's prompt with the target appended; in its cross-attention the target columns
carry the target concept's own attention map times a negative weight w, every other column is copied from the
plain branch A, and early coarse self-attention maps are copied too (``erasekit.gie``). No weights change: the
Edit is an inference control holding the settings and, unless a fixed ``scale`` is given, the adapter that
predicts w from the first step's attention. ``erase`` trains that adapter on labels a judge picks over a grid
of scales (the paper's GPT-4o ranking is not available; see ``erasekit.gie.adapter``).
"""

from __future__ import annotations

import torch

from ...edits import Edit
from ...errors import InvalidEditError
from ...judges import make_judge
from ...pipeline_state import editing_state, existing_state
from ..base import EraseRequest, Method, register
from .adapter import InhibitionAdapter, fit_adapter, label_prompts
from .attention import count_cross_attention_layers
from .config import GIEConfig
from .sampler import InhibitedSampler, check_pipeline

ADAPTER_PREFIX = "adapter."
# GIE's sampler is kept in the pipeline's PipelineState: as its call override (what generation calls) and among
# the installed objects, owned by the edit (what ``remove_edit`` and ``gie_sampler`` find).
_SAMPLER = InhibitedSampler


@register
class GIE(Method):
    name = "gie"
    summary = "growth inhibitors: negative-weight target attention injected at inference, scale from an adapter"
    kind = "inference_control"
    families = ("sd",)
    Config = GIEConfig

    def erase(self, backbone, request: EraseRequest, config: GIEConfig | None = None) -> Edit:
        self.check_family(backbone.family)
        config = config or self.make_config()
        sampler = InhibitedSampler(backbone.pipeline, request.targets, config.control())
        data = {"feature_size": sampler.feature_size, "n_tokens": sampler.n_tokens}
        tensors, notes = {}, ""
        if config.scale is not None:
            data["scale"] = config.scale
        else:
            judge = make_judge(config.judge, request.targets, backbone.toy_world_version or False, config.judge_path)
            prompts = request.target_prompts()[: config.train_prompts]
            d = backbone.defaults
            seed = request.seed if config.seed is None else config.seed
            labelled = label_prompts(
                sampler,
                judge,
                prompts,
                [seed + i for i in range(len(prompts))],
                config.scale_grid,
                config.num_inference_steps or d.num_inference_steps,
                d.guidance_scale if config.guidance_scale is None else config.guidance_scale,
                d.height,
                d.width,
            )
            features = labelled["features"]  # (prompts, n_tokens, layers): every token of a prompt shares its label
            labels = labelled["labels"][:, None].expand(-1, features.shape[1])
            adapter, loss = fit_adapter(
                features.flatten(0, 1), labels.flatten(), config.hidden, config.epochs, config.lr, seed
            )
            tensors = {ADAPTER_PREFIX + k: v for k, v in adapter.state_dict().items()}
            values, counts = labelled["labels"].unique(return_counts=True)
            data["training"] = {
                "judge": judge.name,
                "prompts": len(prompts),
                "fit_mse": loss,
                "seed": seed,
                "labels": {f"{v:g}": int(c) for v, c in zip(values.tolist(), counts.tolist())},
                "absent_share_by_scale": {
                    f"{s:g}": float(1 - p.float().mean()) for s, p in zip(config.scale_grid, labelled["present"])
                },
            }
            notes = unerased_note(labelled["present"], config.scale_grid)
        return self.new_edit(
            backbone,
            request.targets,
            config,
            tensors=tensors,
            data=data,
            notes=notes,
        )

    def apply_edit(self, edit: Edit, pipeline) -> None:
        check_pipeline(pipeline)
        if gie_sampler(pipeline) is not None:
            raise InvalidEditError(
                "a GIE edit is already applied to this pipeline; erase several concepts in one "
                "GIE edit (--concept a --concept b) instead of stacking two"
            )
        state = existing_state(pipeline)
        if state is not None:
            state.check_sampler_free("GIE's two-branch sampler")
        config = GIEConfig(**edit.config)
        adapter = adapter_from_edit(edit, count_cross_attention_layers(pipeline.unet))
        sampler = InhibitedSampler(
            pipeline, edit.concepts, config.control(), adapter, default_scale=edit.data.get("scale")
        )
        with editing_state(pipeline) as state:
            sampler.install()
            state.set_call_override(sampler)
            state.install(edit, sampler)

    def remove_edit(self, edit: Edit, pipeline) -> None:
        with editing_state(pipeline) as state:
            sampler = state.uninstall(edit)
            if sampler is not None:
                sampler.remove()
                if state.call_override is sampler:
                    state.set_call_override(None)


def unerased_note(present: torch.Tensor, grid: list[float]) -> str:
    """A warning for the user when, for some training prompts, no scale of the grid removed the concept.

    ``present`` is the judge's verdict, ``(len(grid), n_prompts)``. Such prompts are labelled with the scale the
    judge found least present, so an adapter trained on them alone predicts scales that do not erase.
    """
    stuck = int(present.all(dim=0).sum())
    if not stuck:
        return ""
    total = present.shape[1]
    note = (
        f"the judge still saw the concept at every scale of the grid (down to w = {min(grid):g}) for {stuck} of "
        f"{total} training prompts"
    )
    if stuck == total:
        note += (
            "; this adapter is unlikely to erase: try a wider grid (--set scale_grid=[...]) and check that "
            "the model's cross-attention is token-selective (erasekit's scripts/cross_attention_probe.py)"
        )
    return note


def adapter_from_edit(edit: Edit, feature_size: int) -> InhibitionAdapter | None:
    """The edit's adapter, checked against the pipeline's number of cross-attention layers."""
    state = {k[len(ADAPTER_PREFIX) :]: v for k, v in edit.tensors.items() if k.startswith(ADAPTER_PREFIX)}
    if not state:
        if edit.data.get("scale") is None:
            raise InvalidEditError("this GIE edit has neither an adapter nor a fixed scale; it is damaged")
        return None
    trained_for = int(edit.data.get("feature_size", state["net.0.weight"].shape[1]))
    if trained_for != feature_size:
        raise InvalidEditError(
            f"this GIE adapter was trained on a backbone with {trained_for} cross-attention layers (base "
            f"{edit.base_model}); this pipeline's UNet has {feature_size}: train an adapter for it"
        )
    adapter = InhibitionAdapter(trained_for, edit.config.get("hidden", [64, 32]))
    adapter.load_state_dict({k: v.float() for k, v in state.items()})
    return adapter.eval().requires_grad_(False)


def gie_sampler(pipeline) -> InhibitedSampler | None:
    """The sampler an applied GIE edit installed on ``pipeline`` (call it like the pipeline), if any."""
    state = existing_state(pipeline)
    samplers = state.things(_SAMPLER) if state else []
    return samplers[-1] if samplers else None


__all__ = ["GIE", "GIEConfig", "adapter_from_edit", "gie_sampler"]
