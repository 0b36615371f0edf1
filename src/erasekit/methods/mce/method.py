"""MCE — Minimalist Concept Erasure in Generative Models (Yang Zhang et al., ICML 2025; arXiv 2507.13386).

Learns a binary gate per unit of FLUX's double-stream FFNs (image and text streams) and per output channel of
the text stream's modulation linear, on a frozen model, so that the *final output* of the whole K-step sampler
for a concept prompt matches the original model's output for the empty prompt (the paper's target), while
neutral prompts keep their original outputs (weight β):

    L(M) = E_{c ∈ C_R} ‖F_M(x_T, c) − F(x_T, ∅)‖²  +  β · E_{c ∈ C_N} ‖F_M(x_T, c) − F(x_T, c)‖²

Gates train through the hard-concrete relaxation and are binarised at λ > 0. Gradients flow through every
sampler step by step-wise recomputation (``erasekit.mce.objective``). The released trainer differs: by default
it targets the original model's image of the concept prompt edited toward the concept phrase replaced by a
neutral phrase with FlowEdit on FLUX.1-dev (``target="flow_edit"``: here the model being erased edits, see
``erasekit.mce.flow_edit``), or, as its alternative, the original output for the replaced prompt from the same
x_T (``target="neutral_prompt"``); it uses β = 0.1, one fixed seed (48) for every sample (``noise="fixed"``),
and resamples the mask noise during recomputation (never done here).

``neutral="paired"`` is erasekit's own option, in neither the paper nor the released code: each concept sample's
neutral partner is its target prompt on the same x_T (README, toy-world results).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict
from pathlib import Path

import torch

from ...config import InvalidSettingError
from ...edits import Edit
from ...errors import InvalidArgumentError, InvalidEditError
from ...progress import progress_bar
from ...prompt_sets import load_cc3m
from ..base import EraseRequest, Method, get_method, register
from ..training.checkpoint import TrainingCheckpoint, run_identity
from ..training.engine import TrainingDivergedError
from .bake import bake
from .config import MCEConfig
from .flow_edit import flow_edit
from .gates import Gate, find_gates, hard_mask, site_units
from .hooks import MaskHooks
from .objective import end_to_end_backward, mce_loss, rollout

MASK_PREFIX = "mask."
# A mask edit's hooks are kept in the pipeline's PipelineState (``erasekit.pipeline_state``), owned by the edit;
# ``existing_state(pipeline).things(_HOOKS)`` lists those applied, in order.
_HOOKS = MaskHooks


def neutral_prompts_from_file(path: str | Path, n: int) -> list[str]:
    """The first ``n`` captions (first tab-separated column) of a CC3M-style file."""
    prompts = load_cc3m(path, n).prompts
    if not prompts:
        raise InvalidArgumentError(f"{path} holds no captions")
    return prompts


def load_editor(backbone, edit_model: str | None):
    """The model that edits FlowEdit targets: ``backbone`` itself, or ``edit_model`` loaded beside it, frozen."""
    if not edit_model:
        return backbone
    from ...models import load

    editor = load(edit_model, device=backbone.device, dtype=backbone.dtype)
    if editor.family != "flux":
        raise InvalidSettingError(
            f"edit_model {edit_model!r} is a {editor.family} model; FlowEdit needs a flow-matching one"
        )
    keys = ("latent_channels", "scaling_factor", "shift_factor")
    ours, theirs = ({k: p.pipeline.vae.config.get(k) for k in keys} for p in (backbone, editor))
    if ours != theirs or editor.denoiser.config.in_channels != backbone.denoiser.config.in_channels:
        raise InvalidSettingError(
            f"edit_model {edit_model!r} does not share the erased model's latent space "
            f"(VAE {theirs} against {ours}); its edits would mean nothing to it"
        )
    return editor.freeze()


def gate_denoiser(pipeline):
    return getattr(pipeline, "transformer", None) or getattr(pipeline, "unet", None)


@register
class MCE(Method):
    name = "mce"
    summary = "learned binary masks on FFN units and text-stream modulation channels, end-to-end through the sampler"
    kind = "mask_set"
    families = ("flux", "sd")
    Config = MCEConfig

    # ------------------------------------------------------------------------------------------- erase

    def erase(self, backbone, request: EraseRequest, config: MCEConfig | None = None) -> Edit:
        self.check_family(backbone.family)
        config = config or self.make_config()
        denoiser = backbone.freeze().denoiser
        if config.target == "flow_edit" and backbone.family != "flux":
            raise InvalidSettingError(
                f"target 'flow_edit' needs a flow-matching model (FLUX); {backbone.family} is not one"
            )
        gates = find_gates(denoiser, backbone.family, config.heads, config.unet_pattern)
        concept_prompts = request.target_prompts()
        neutral_prompts = request.keep_prompts()
        if not neutral_prompts and config.neutral == "random":
            if not config.neutral_prompts_file:
                raise InvalidArgumentError(
                    "MCE needs neutral prompts: pass --preserve concepts or --set "
                    "neutral_prompts_file=PATH (e.g. CC3M captions)"
                )
            neutral_prompts = neutral_prompts_from_file(config.neutral_prompts_file, config.num_neutral)
        if config.target != "empty_prompt":
            if request.anchor_prompts:
                replaced = list(request.anchor_prompts)
            else:
                replaced = []
                for p in concept_prompts:
                    for t in request.targets:
                        p = p.replace(t, config.neutral_phrase)
                    replaced.append(p)
        d = backbone.defaults
        steps_k = config.sampler_steps or d.num_inference_steps
        guidance = d.guidance_scale if config.guidance_scale is None else config.guidance_scale

        device = backbone.device
        logits = {
            g.key: torch.full((g.units,), float(config.init_logit), device=device, requires_grad=True) for g in gates
        }
        lrs = {"ffn": config.lr_ffn, "norm": config.lr_norm, "heads": config.lr_heads}
        groups = [
            {"params": [logits[g.key] for g in gates if g.group == group], "lr": lr}
            for group, lr in lrs.items()
            if any(g.group == group for g in gates)
        ]
        opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        optimizer = opt_cls(groups, weight_decay=config.weight_decay)
        seed = request.seed if config.seed is None else config.seed
        generator = torch.Generator("cpu").manual_seed(seed)
        rng = random.Random(seed)
        checkpoint = _Checkpoint(
            request.workdir, run_identity(self.name, backbone.name_or_path, request.targets, config)
        )
        start = checkpoint.restore(logits, optimizer, {"generator": generator}, rng) if request.resume else 0

        editor = load_editor(backbone, config.edit_model) if config.target == "flow_edit" else None
        with torch.no_grad():
            empty = backbone.encode([""])
            editor_empty = editor.encode([""]) if editor not in (None, backbone) else empty
        uncond = empty if guidance and guidance > 1 else None
        hooks = MaskHooks(denoiser, gates, logits).install()
        n_concept = math.ceil(config.batch_size / 2)
        n_neutral = config.batch_size - n_concept
        history = []
        try:
            with progress_bar(f"{self.name}: {', '.join(request.targets)}", total=config.steps) as bar:
                bar.update(start)
                for step in range(start, config.steps):
                    ci = [rng.randrange(len(concept_prompts)) for _ in range(n_concept)]
                    if config.target == "empty_prompt":
                        target_prompts = [""] * n_concept
                    else:
                        target_prompts = [replaced[i] for i in ci]
                    if config.neutral == "paired":
                        neutral = target_prompts[:n_neutral]
                    else:
                        neutral = [neutral_prompts[rng.randrange(len(neutral_prompts))] for _ in range(n_neutral)]
                    prompts = [concept_prompts[i] for i in ci] + neutral
                    target_prompts = target_prompts + neutral
                    is_concept = torch.tensor([True] * n_concept + [False] * n_neutral, device=device)
                    x_t = self._initial_noise(backbone, config, generator, len(prompts), steps_k)
                    if config.neutral == "paired":
                        x_t[n_concept:] = x_t[:n_neutral]
                    with torch.no_grad():
                        cond = backbone.encode(prompts)
                        target_cond = backbone.encode(target_prompts)
                        hooks.mode = "off"
                        state = backbone.prepare(len(prompts), num_inference_steps=steps_k, latents=x_t)
                        if config.target == "flow_edit":
                            target = rollout(backbone, state, cond, uncond, guidance)[-1].latents
                            if editor is backbone:
                                source_cond, edit_cond = cond[:n_concept], target_cond[:n_concept]
                            else:
                                source_cond = editor.encode(prompts[:n_concept])
                                edit_cond = editor.encode(target_prompts[:n_concept])
                            target[:n_concept] = flow_edit(
                                editor,
                                target[:n_concept],
                                source_cond,
                                edit_cond,
                                editor_empty,
                                steps=config.edit_steps,
                                n_max=config.edit_n_max,
                                generator=generator,
                                source_guidance=config.edit_source_guidance,
                                target_guidance=config.edit_target_guidance,
                            )
                        else:
                            target = rollout(backbone, state, target_cond, uncond, guidance)[-1].latents
                    hooks.mode = "relaxed"
                    noises = [hooks.draw_noise(generator) for _ in range(steps_k)]
                    loss = end_to_end_backward(
                        backbone,
                        state,
                        cond,
                        uncond,
                        guidance,
                        hooks,
                        noises,
                        lambda final: mce_loss(final, target, is_concept, config.beta),
                    )
                    if not torch.isfinite(loss):
                        where = (
                            f"; the last good checkpoint is kept in {checkpoint.folder}" if checkpoint.exists() else ""
                        )
                        raise TrainingDivergedError(f"MCE loss became {float(loss)} at step {step}{where}")
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    history.append(float(loss))
                    open_share = float(torch.cat([hard_mask(v.detach()) for v in logits.values()]).mean())
                    bar.update(step + 1, loss=float(loss), kept=open_share)
                    if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                        checkpoint.save(step + 1, logits, optimizer, {"generator": generator}, rng)
        finally:
            hooks.remove()
        masks = {g.key: hard_mask(logits[g.key].detach()).cpu() for g in gates}
        training = {
            "final_loss": history[-1] if history else None,
            "sampler_steps": steps_k,
            "guidance_scale": guidance,
            "steps": config.steps,
            "seed": seed,
        }
        return mask_edit(gates, masks, config, backbone, request.targets, training=training)

    @staticmethod
    def _initial_noise(backbone, config, generator, batch, steps_k):
        if config.noise == "fixed":
            one = backbone.prepare(
                1, generator=torch.Generator("cpu").manual_seed(config.fixed_seed), num_inference_steps=steps_k
            ).latents
            return one.expand(batch, *one.shape[1:]).clone()
        return backbone.prepare(batch, generator=generator, num_inference_steps=steps_k).latents

    # ------------------------------------------------------------------------------------------- apply

    def apply_edit(self, edit: Edit, pipeline) -> None:
        denoiser = gate_denoiser(pipeline)
        gates, masks = gates_and_masks(edit, denoiser)
        from ...pipeline_state import editing_state

        hooks = MaskHooks(denoiser, gates, masks=masks).install()
        # Several mask edits compose: their hooks multiply, which is merging the masks by multiplication.
        with editing_state(pipeline) as state:
            state.install(edit, hooks)

    def remove_edit(self, edit: Edit, pipeline) -> None:
        from ...pipeline_state import editing_state

        with editing_state(pipeline) as state:
            hooks = state.uninstall(edit)
            if hooks is not None:
                hooks.remove()


def gates_and_masks(edit: Edit, denoiser) -> tuple[list[Gate], dict[str, torch.Tensor]]:
    """The edit's gates and binary masks, checked against ``denoiser``'s shape."""
    if denoiser is None:
        raise InvalidEditError("this pipeline has neither a transformer nor a UNet to mask")
    gates = [Gate(**g) for g in edit.data.get("gates", [])]
    if not gates:
        raise InvalidEditError("this mask edit lists no gates; it is damaged")
    modules = dict(denoiser.named_modules())
    masks = {}
    for gate in gates:
        module = modules.get(gate.module)
        if module is None:
            raise InvalidEditError(f"the masks were saved for another model shape: this model has no {gate.module}")
        units = site_units(module, gate.kind)
        if units != gate.units:
            raise InvalidEditError(
                f"the masks were saved for another model shape: {gate.module} has {units} units "
                f"here, {gate.units} in the edit"
            )
        tensor = edit.tensors.get(MASK_PREFIX + gate.key)
        if tensor is None or tensor.numel() != gate.units:
            raise InvalidEditError(f"the edit's mask for {gate.key} is missing or has the wrong size")
        masks[gate.key] = tensor.float().to(next(denoiser.parameters()).device)
    return gates, masks


def mask_edit(
    gates: list[Gate], masks: dict[str, torch.Tensor], config: MCEConfig, backbone, concepts: list[str], **data
) -> Edit:
    """The mask-set Edit of binary ``masks`` over ``gates`` (uint8 tensors, the gate list, the share pruned)."""
    return get_method("mce").new_edit(
        backbone,
        concepts,
        config,
        tensors={MASK_PREFIX + k: v.to(torch.uint8) for k, v in masks.items()},
        data={"gates": [asdict(g) for g in gates], "pruned_share": pruned_share(gates, masks)} | data,
    )


def pruned_share(gates: list[Gate], masks: dict[str, torch.Tensor]) -> dict[str, float]:
    """Share of units switched off, per gate site and per group (``ffn``, ``norm``, ``heads``) and overall."""
    out: dict[str, float] = {}
    totals: dict[str, list[float]] = {}
    for gate in gates:
        off = float(1 - masks[gate.key].float().mean())
        out[gate.key] = round(off, 4)
        totals.setdefault(gate.group, [0.0, 0.0])
        totals[gate.group][0] += off * gate.units
        totals[gate.group][1] += gate.units
    for group, (off, n) in totals.items():
        out[f"all {group}"] = round(off / n, 4)
    return out


def merge_mask_edits(edits: list[Edit]) -> Edit:
    """One mask edit whose masks are the product of ``edits``' masks (erasing every concept at once)."""
    if not edits or any(e.kind != "mask_set" for e in edits):
        raise InvalidEditError("merge takes mask-set edits only")
    first = edits[0]
    if any(e.data.get("gates") != first.data.get("gates") or e.base_model != first.base_model for e in edits):
        raise InvalidEditError("mask edits merge only when made on the same model with the same gates")
    tensors = {}
    for key in first.tensors:
        merged = torch.ones_like(first.tensors[key])
        for e in edits:
            merged = merged * e.tensors[key]
        tensors[key] = merged
    gates = [Gate(**g) for g in first.data["gates"]]
    masks = {k[len(MASK_PREFIX) :]: v for k, v in tensors.items()}
    data = dict(first.data, pruned_share=pruned_share(gates, masks), merged_from=[e.concepts for e in edits])
    data.pop("training", None)
    return Edit(
        kind="mask_set",
        method=first.method,
        config=first.config,
        base_model=first.base_model,
        concepts=[c for e in edits for c in e.concepts],
        family=first.family,
        tensors=tensors,
        data=data,
    )


class _Checkpoint(TrainingCheckpoint):
    """MCE's checkpoint in ``<workdir>/checkpoint``: the format and resume rule every training method shares
    (``erasekit.methods.training.checkpoint``), holding the gate logits as the trained tensors."""


def bake_mask_edit(backbone, edit, prune: bool = True) -> dict:
    """Write an MCE mask edit into ``backbone``'s weights: masked FFN units cut out (``prune``: smaller and
    faster) or zeroed (same shapes, saves as a plain diffusers folder). Returns the share removed per site."""
    gates, masks = gates_and_masks(edit, backbone.denoiser)
    return bake(backbone.denoiser, gates, masks, prune=prune)
