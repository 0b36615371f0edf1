"""UCE — Unified Concept Editing in Diffusion Models (Gandikota et al., WACV 2024): a closed-form weight edit.

The linear layers that read the text encoder's output are edited so that each erased concept's embedding is
projected where the guide's is (the empty prompt, or ``--anchor``), while preserved concepts' projections stay
as they were: ``W = W₀ · M`` with one matrix ``M`` per group of layers reading the same vectors
(``erasekit.methods.uce.closed_form``). On SD the layers are the key and value projections of every
cross-attention (``attn2.to_k`` / ``attn2.to_v``); on FLUX, ``context_embedder`` (T5 tokens) and the pooled-text
projection (see ``UCEConfig`` for why not the joint attention's ``add_k_proj``/``add_v_proj``). No training, no
randomness: the edit takes the time of encoding the concepts and one solve per group.

The preserved set: ``--preserve`` concepts, the lines of ``--set preserve_file=FILE``, and, on toy models, the
erase workflow's preservation prompts (``EraseRequest.preserve_prompts``: captions without the concept).
"""

from __future__ import annotations

import time

import torch

from ...arguments import InvalidConceptError, concept_list
from ...checksums import fingerprint
from ...edits import Edit
from ...errors import NoOpEditError, UnsupportedModelError
from ...prompt_sets import load_prompt_file
from ..base import EraseRequest, Method, register
from .closed_form import guide_update
from .config import UCEConfig
from .embeddings import concept_vectors


def edited_layers(backbone, config: UCEConfig) -> dict[str, dict[str, torch.nn.Linear]]:
    """The layers UCE edits, by the text vectors they read (``"tokens"``, ``"pooled"``): name -> module."""
    denoiser = backbone.denoiser
    if backbone.family == "sd":
        wanted = ("to_k", "to_v") if config.edit_keys else ("to_v",)
        layers = {
            name: module
            for name, module in denoiser.named_modules()
            if "attn2" in name.split(".") and name.rsplit(".", 1)[-1] in wanted
        }
        groups = {"tokens": layers}
    else:
        groups = {"tokens": {"context_embedder": denoiser.context_embedder}}
        if config.flux_pooled:
            pooled = denoiser.time_text_embed.text_embedder.linear_1
            groups["pooled"] = {"time_text_embed.text_embedder.linear_1": pooled}
    for group in groups.values():
        for name, module in group.items():
            if not isinstance(module, torch.nn.Linear):
                raise UnsupportedModelError(f"UCE edits linear layers; {name} is a {type(module).__name__}")
    if not groups["tokens"]:
        raise UnsupportedModelError("this UNet has no cross-attention key/value projections (attn2.to_k/to_v) to edit")
    return groups


def preserved_texts(request: EraseRequest, config: UCEConfig) -> tuple[list[str], dict]:
    """The preserved concepts and prompts (deduplicated, in order) and, for a ``preserve_file``, its provenance."""
    texts = list(request.preserve) + list(request.preserve_prompts or [])
    source = {}
    if config.preserve_file:
        rows = load_prompt_file(config.preserve_file)
        texts += concept_list(rows.prompts, "preserve_file", "preserved concept")
        source = rows.provenance()
    texts = list(dict.fromkeys(texts))
    clash = sorted(set(texts) & set(request.targets))
    if clash:
        raise InvalidConceptError(f"{', '.join(clash)} cannot be both erased and preserved (check the preserve file)")
    return texts, source


def shared_rows(erase: torch.Tensor, preserve: torch.Tensor, tol: float = 1e-5) -> int:
    """How many erased vectors are (to ``tol`` relative) also preserved vectors: the same token in the same
    context, such as the first word of a preserved phrase the concept starts with (CLIP is causal)."""
    if not len(preserve):
        return 0
    near = torch.cdist(erase, preserve) <= tol * erase.norm(dim=1, keepdim=True)
    return int(near.any(dim=1).sum())


@register
class UCE(Method):
    name = "uce"
    summary = (
        "UCE: closed-form edit of the text projections (SD: cross-attention keys, values) mapping the concept "
        "to a guide (empty prompt or --anchor), preserved concepts held (baseline)"
    )
    kind = "weight_delta"
    families = ("sd", "flux")
    Config = UCEConfig

    def erase(self, backbone, request: EraseRequest, config: UCEConfig | None = None) -> Edit:
        self.check_family(backbone.family)
        config = config or self.make_config()
        start = time.perf_counter()
        preserve, source = preserved_texts(request, config)
        groups = edited_layers(backbone, config)
        contexts = request.target_prompts() if config.contexts == "prompts" else []
        vectors = concept_vectors(backbone, request.targets, request.anchor, preserve, config.tokens, contexts)
        in_context = vectors["tokens"].from_contexts
        if contexts and not in_context:
            raise InvalidConceptError(
                f"uce: contexts=prompts, but none of the {len(contexts)} target prompts contains the tokens of "
                f"{', '.join(map(repr, request.targets))} (a synonym or another spelling?); pass prompts that "
                "use the concept's words, or contexts=none"
            )
        component = "unet" if backbone.family == "sd" else "transformer"
        tensors, base, summary = {}, {}, {}
        with torch.no_grad():
            for group, layers in groups.items():
                v = vectors[group]
                d = v.erase.shape[1]
                for name, layer in layers.items():
                    if layer.in_features != d:
                        raise UnsupportedModelError(
                            f"{name} reads {layer.in_features}-dimensional inputs, but the text encoder gives "
                            f"{d}-dimensional {group} embeddings; UCE needs the layer that reads them"
                        )
                diff, gain, condition = guide_update(
                    v.erase,
                    v.guide,
                    v.preserve,
                    config.erase_scale,
                    config.preserve_scale,
                    config.lamb,
                    what=f"the {group} embeddings",
                )
                for name, layer in layers.items():
                    w0 = layer.weight.detach()
                    key = f"{component}.{name}.weight"
                    w = w0.double().cpu()
                    tensors[key] = (w + (w @ diff.T) @ gain).float()
                    base[key] = fingerprint({key: w0})[key]
                summary[group] = {
                    "layers": len(layers),
                    "erase_vectors": len(v.erase),
                    "preserve_vectors": len(v.preserve),
                    "condition_bound": condition,
                }
        originals = {f"{component}.{n}.weight": layer.weight for g in groups.values() for n, layer in g.items()}
        if all(torch.equal(t.to(originals[k].dtype), originals[k].detach().cpu()) for k, t in tensors.items()):
            raise NoOpEditError(
                "uce: the closed form leaves every weight as it was (the concept already projects "
                "where the guide does); no edit was made"
            )
        shared = shared_rows(vectors["tokens"].erase, vectors["tokens"].preserve)
        notes = (
            f"{shared} of the concept's token vectors are also preserved (the same token after the same words, "
            "e.g. a preserved phrase that begins like the concept); the edit splits the difference for those"
            if shared
            else ""
        )
        data = {
            "guide": request.anchor or "",
            "preserved": len(preserve),
            "context_vectors": in_context,
            "groups": summary,
            "seconds": time.perf_counter() - start,
        }
        if source:
            data["preserve_file"] = source
        return self.new_edit(
            backbone, request.targets, config, tensors=tensors, data=data, notes=notes, base_weights=base
        )
