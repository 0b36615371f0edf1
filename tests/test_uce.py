"""UCE: the closed form against an independent least-squares solve, the edited projections on tiny SD and FLUX
(erased concept onto the guide, preserved concepts held, to the precision the ridge allows), which tokens
enter, and the refusals (absent concepts, a singular system)."""

from __future__ import annotations

import pytest
import torch

import erasekit.api as ek
from erasekit.arguments import InvalidConceptError
from erasekit.config import InvalidSettingError
from erasekit.methods import EraseRequest, get_method
from erasekit.methods.uce import (
    SingularSystemError,
    UCEConfig,
    closed_form,
    concept_vectors,
    edited_layers,
    guide_map,
    occurrences,
    paired_positions,
    phrase_positions,
    residual_bound,
)
from erasekit.prompt_sets import PromptSetError


def _ridge_lstsq(w0, c_e, v_e, c_p, s_e, s_p, lamb):
    """The same objective as a stacked least-squares problem, solved by ``torch.linalg.lstsq`` (QR), not by the
    normal equations: rows √s_e·c_e → √s_e·v_e, √s_p·c_p → √s_p·W₀c_p, √λ·I → √λ·W₀ᵀ."""
    d = w0.shape[1]
    x = torch.cat([s_e**0.5 * c_e, s_p**0.5 * c_p, lamb**0.5 * torch.eye(d, dtype=torch.float64)])
    y = torch.cat([s_e**0.5 * v_e, s_p**0.5 * c_p @ w0.T, lamb**0.5 * w0.T])
    return torch.linalg.lstsq(x, y).solution.T


def test_closed_form_is_the_least_squares_minimiser_and_guide_map_factors_it():
    g = torch.Generator().manual_seed(0)
    d, out = 24, 10
    w0 = torch.randn(out, d, generator=g, dtype=torch.float64)
    c_e, c_p = torch.randn(3, d, generator=g, dtype=torch.float64), torch.randn(5, d, generator=g, dtype=torch.float64)
    guides = torch.randn(3, d, generator=g, dtype=torch.float64)
    for s_e, s_p, lamb in ((1.0, 1.0, 0.5), (2.0, 0.3, 1e-3), (1.0, 4.0, 10.0)):
        w = closed_form(w0, c_e, guides @ w0.T, c_p, s_e, s_p, lamb)
        torch.testing.assert_close(w, _ridge_lstsq(w0, c_e, guides @ w0.T, c_p, s_e, s_p, lamb), rtol=1e-9, atol=1e-9)
        m, _ = guide_map(c_e, guides, c_p, s_e, s_p, lamb)
        torch.testing.assert_close(w0 @ m, w, rtol=1e-10, atol=1e-10)


def test_the_ridge_keeps_w0_off_the_span_and_the_residual_bound_holds():
    g = torch.Generator().manual_seed(1)
    d, out, lamb = 16, 6, 0.5
    w0 = torch.randn(out, d, generator=g, dtype=torch.float64)
    c_e, c_p = torch.randn(2, d, generator=g, dtype=torch.float64), torch.randn(3, d, generator=g, dtype=torch.float64)
    v_e = torch.randn(2, out, generator=g, dtype=torch.float64)
    w = closed_form(w0, c_e, v_e, c_p, lamb=lamb)
    # A direction no erased or preserved vector spans keeps W₀'s projection exactly.
    basis = torch.linalg.qr(torch.cat([c_e, c_p]).T, mode="complete").Q[:, 5:]
    torch.testing.assert_close(w @ basis, w0 @ basis, rtol=1e-10, atol=1e-10)
    residual = ((c_e @ w.T - v_e) ** 2).sum() + ((c_p @ (w - w0).T) ** 2).sum()
    assert residual <= residual_bound(w0, c_e, v_e, c_p, lamb=lamb) * (1 + 1e-9)
    # The bound shrinks with λ: at λ → 0 the targets are met exactly.
    tiny = closed_form(w0, c_e, v_e, c_p, lamb=1e-9)
    torch.testing.assert_close(c_e @ tiny.T, v_e, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c_p @ tiny.T, c_p @ w0.T, rtol=1e-6, atol=1e-6)


def test_pairing_counts_from_the_end_of_both_phrases():
    assert paired_positions([1], [1], "all") == [(1, 1)]
    assert paired_positions([1, 2, 3], [1, 2], "all") == [(1, 1), (2, 1), (3, 2)]
    assert paired_positions([1], [1, 2], "all") == [(1, 2)]
    assert paired_positions([1, 2, 3], [0], "all") == [(1, 0), (2, 0), (3, 0)]
    assert paired_positions([1, 2, 3], [1, 2], "last") == [(3, 2)]


def _layer_checks(backbone, edit, targets, anchor, preserve, config):
    """For every edited layer: W c_e ≈ W₀ g_e and W c_p ≈ W₀ c_p within ``residual_bound``, and W is the
    independent least-squares minimiser."""
    vectors = concept_vectors(backbone, targets, anchor, preserve, config.tokens)
    component = "unet" if backbone.family == "sd" else "transformer"
    checked = 0
    for group, layers in edited_layers(backbone, config).items():
        v = vectors[group]
        for name, layer in layers.items():
            w0 = layer.weight.detach().double()
            w = edit.tensors[f"{component}.{name}.weight"].double()
            targets_v = v.guide @ w0.T
            residual = ((v.erase @ w.T - targets_v) ** 2).sum() + ((v.preserve @ (w - w0).T) ** 2).sum()
            if len(v.erase) + len(v.preserve) < w0.shape[1]:  # the bound's premise: independent vectors
                bound = residual_bound(w0, v.erase, targets_v, v.preserve, lamb=config.lamb)
                # float32 storage of W adds ~1e-7 relative error on top of the exact minimiser.
                assert residual <= bound * (1 + 1e-4) + 1e-8, f"{name}: residual {residual:.3g} > bound {bound:.3g}"
            exact = _ridge_lstsq(w0, v.erase, targets_v, v.preserve, 1.0, 1.0, config.lamb)
            torch.testing.assert_close(w, exact, rtol=1e-5, atol=1e-5)
            checked += 1
    return checked


@pytest.mark.parametrize("family", ["sd", "flux"])
@pytest.mark.parametrize("anchor", [None, "square"])
def test_edited_projections_map_the_concept_onto_the_guide_and_hold_the_preserved(family, anchor, request):
    backbone = request.getfixturevalue(f"tiny_{family}")
    preserve = ["circle", "blue", "a photo of a blue triangle"]
    for settings in ({}, {"tokens": "last"}, {"lamb": 1e-6}):
        edit = ek.erase(backbone, "uce", ["red star"], preserve=preserve, anchor=anchor, settings=settings)
        config = get_method("uce").make_config(settings)
        n = _layer_checks(backbone, edit, ["red star"], anchor, preserve, config)
        assert n == len(edit.tensors) == (8 if family == "sd" else 2)
    # At λ → 0 the erased tokens are projected where the guide's are.
    vectors = concept_vectors(backbone, ["red star"], anchor, preserve, "all")["tokens"]
    layer_name, layer = next(iter(edited_layers(backbone, config)["tokens"].items()))
    w = edit.tensors[("unet." if family == "sd" else "transformer.") + layer_name + ".weight"].double()
    w0 = layer.weight.detach().double()
    torch.testing.assert_close(vectors.erase @ w.T, vectors.guide @ w0.T, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(vectors.preserve @ w.T, vectors.preserve @ w0.T, rtol=1e-3, atol=1e-3)


def test_which_tokens_enter(tiny_sd):
    vectors = concept_vectors(tiny_sd, ["red star"], None, ["blue circle"], "all")["tokens"]
    assert (len(vectors.erase), len(vectors.preserve)) == (2, 2)
    last = concept_vectors(tiny_sd, ["red star"], None, ["blue circle"], "last")["tokens"]
    assert (len(last.erase), len(last.preserve)) == (1, 1)
    torch.testing.assert_close(last.erase[0], vectors.erase[1])
    # The empty guide is CLIP's start-token slot, the same vector for every pair.
    start = tiny_sd.encode([""]).embeds[0, 0].double()
    torch.testing.assert_close(vectors.guide, start.expand(2, -1), rtol=1e-5, atol=1e-5)
    # Several concepts at once: their tokens are stacked.
    both = concept_vectors(tiny_sd, ["red star", "striped"], "square", [], "all")["tokens"]
    assert len(both.erase) == 3 and len(both.preserve) == 0
    edit = ek.erase(tiny_sd, "uce", ["star", "striped"], preserve=["circle"])
    assert edit.concepts == ["star", "striped"] and edit.data["groups"]["tokens"]["erase_vectors"] == 2
    assert not edit.notes
    # CLIP is causal: "red" in "red star" is the same vector as the preserved word "red"; the edit says so.
    edit = ek.erase(tiny_sd, "uce", ["red star"], preserve=["red"])
    assert edit.notes.startswith("1 of the concept's token vectors are also preserved")


def test_flux_reads_t5_tokens_and_the_pooled_clip_vector(tiny_flux):
    vectors = concept_vectors(tiny_flux, ["red star"], None, ["circle"], "all")
    assert len(vectors["tokens"].erase) == 2 and len(vectors["pooled"].erase) == 1
    # T5 has no start token: the empty guide's slot is the last one (the released code's index -1).
    last_slot = tiny_flux.encode([""]).embeds[0, -1].double()
    torch.testing.assert_close(vectors["tokens"].guide[0], last_slot, rtol=1e-5, atol=1e-5)
    edit = ek.erase(tiny_flux, "uce", ["star"], settings={"flux_pooled": False})
    assert sorted(edit.tensors) == ["transformer.context_embedder.weight"]


def test_edit_keys_false_edits_the_values_only(tiny_sd):
    edit = ek.erase(tiny_sd, "uce", ["star"], settings={"edit_keys": False})
    assert edit.tensors and all(k.endswith("attn2.to_v.weight") for k in edit.tensors)


def test_absent_and_oversized_concepts_are_refused(tiny_sd, tiny_flux):
    # Blank text never reaches a method.
    with pytest.raises(InvalidConceptError, match="non-empty target"):
        EraseRequest(targets=[""])
    # Byte-level BPE gives every character a token, so "absent" means: only special tokens.
    with pytest.raises(InvalidConceptError, match="no token of its own"):
        ek.erase(tiny_sd, "uce", ["<|endoftext|>"])
    with pytest.raises(InvalidConceptError, match="anchor .* no token of its own"):
        ek.erase(tiny_sd, "uce", ["star"], anchor="<|startoftext|>")
    with pytest.raises(InvalidConceptError, match="preserved concept .* no token of its own"):
        ek.erase(tiny_flux, "uce", ["star"], preserve=["</s>"])
    with pytest.raises(InvalidConceptError, match="tokens long"):
        ek.erase(tiny_sd, "uce", [" ".join(["star"] * 80)])
    assert phrase_positions(tiny_sd.tokenizer, "red star", 77) == [1, 2]
    assert phrase_positions(tiny_flux.tokenizer, "red star", 48) == [0, 1]


def test_a_singular_system_is_refused_with_advice(tiny_sd):
    with pytest.raises(SingularSystemError, match="singular.*lamb > 0"):
        ek.erase(tiny_sd, "uce", ["star"], preserve=["circle"], settings={"lamb": 0})
    with pytest.raises(SingularSystemError, match="lamb"):
        guide_map(torch.ones(1, 4), torch.zeros(1, 4), torch.ones(3, 4), lamb=0)  # rank 1 in 4 dimensions
    with pytest.raises(SingularSystemError, match="ill-conditioned"):
        guide_map(torch.eye(4)[:2], torch.zeros(2, 4), torch.eye(4)[:2].repeat(3, 1), lamb=1e-30)


def test_eq7_without_the_ridge_when_the_preserved_set_spans_the_space(tiny_sd):
    from erasekit.toy.world import vocabulary

    words = [w for w in vocabulary() if w.isalpha() and w != "star"][:48]  # more vectors than the 32 dimensions
    # A freshly initialised CLIP ends in a LayerNorm with zero bias: every embedding sums to zero, so 48 of them
    # span only 31 of the 32 dimensions and Eq. 7 without the ridge is refused.
    with pytest.raises(SingularSystemError, match="ill-conditioned"):
        ek.erase(tiny_sd, "uce", ["star"], preserve=words, settings={"lamb": 0})
    with torch.no_grad():
        tiny_sd.pipeline.text_encoder.final_layer_norm.bias.normal_(generator=torch.Generator().manual_seed(0))
    edit = ek.erase(tiny_sd, "uce", ["star"], preserve=words, settings={"lamb": 0})
    config = get_method("uce").make_config({"lamb": 0})
    assert _layer_checks(tiny_sd, edit, ["star"], None, words, config) == 8


def test_preserve_file_and_toy_preserve_prompts_enter_the_preserved_set(tiny_sd, tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("circle\n\nred square\n")
    edit = ek.erase(tiny_sd, "uce", ["star"], preserve=["circle"], settings={"preserve_file": str(path)})
    assert edit.data["preserved"] == 2  # "circle" once
    assert edit.data["preserve_file"]["rows"] == 2
    assert edit.data["groups"]["tokens"]["preserve_vectors"] == 3
    path.write_text("circle\nstar\n")
    with pytest.raises(InvalidConceptError, match="both erased and preserved"):
        ek.erase(tiny_sd, "uce", ["star"], settings={"preserve_file": str(path)})
    with pytest.raises(PromptSetError):
        ek.erase(tiny_sd, "uce", ["star"], settings={"preserve_file": str(tmp_path / "missing.txt")})
    # The erase workflow's toy preservation prompts (EraseRequest.preserve_prompts) count as preserved texts.
    request = EraseRequest(targets=["star"], preserve=["circle"], preserve_prompts=["a red square", "a blue circle"])
    edit = get_method("uce").erase(tiny_sd, request)
    assert edit.data["preserved"] == 3


def test_contexts_read_the_concept_where_prompts_use_it(tiny_sd):
    tok = tiny_sd.tokenizer
    found = occurrences(tok, "star", "a red star and a star")
    ids = tok("a red star and a star").input_ids
    assert len(found) == 2 and found[0] == [3]
    assert [tok.decode(ids[p[0]]).strip() for p in found] == ["star", "star"]
    assert occurrences(tok, "red star", "a red star and a blue circle") == [[2, 3]]
    assert occurrences(tok, "star", "a blue circle") == []
    prompts = ["a red star and a blue circle", "a blue circle beside a star"]
    vectors = concept_vectors(tiny_sd, ["star"], None, [], "all", prompts)["tokens"]
    assert (len(vectors.erase), vectors.from_contexts) == (3, 2)
    # Each row is the word's state in that prompt (the causal encoder's, not the lone word's), paired with the guide.
    states = tiny_sd.encode(prompts).embeds.double()
    torch.testing.assert_close(vectors.erase[1], states[0, 3], rtol=1e-5, atol=1e-5)
    second = occurrences(tok, "star", prompts[1])[0][0]
    torch.testing.assert_close(vectors.erase[2], states[1, second], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vectors.guide[2], vectors.guide[0])
    # Through the method: the request's target prompts are the contexts; the edit maps their star onto the guide.
    request = EraseRequest(targets=["star"], prompts=prompts)
    edit = get_method("uce").erase(tiny_sd, request, UCEConfig(contexts="prompts", lamb=1e-3))
    assert edit.data["context_vectors"] == 2
    plain = get_method("uce").erase(tiny_sd, request, UCEConfig(lamb=1e-3))
    assert plain.data["context_vectors"] == 0
    key = next(k for k in edit.tensors if k.endswith("to_v.weight"))
    layer = tiny_sd.denoiser.get_submodule(key.removeprefix("unet.").removesuffix(".weight"))
    w0 = layer.weight.double()
    target = w0 @ vectors.guide[1]
    error = {
        name: ((e.tensors[key].double() @ vectors.erase[1]) - target).norm() / target.norm()
        for name, e in (("contexts", edit), ("lone", plain))
    }
    assert error["contexts"] < 0.05 < error["lone"]


def test_contexts_without_the_concept_are_refused(tiny_sd):
    request = EraseRequest(targets=["star"], prompts=["a blue circle", "a red square"])
    with pytest.raises(InvalidConceptError, match="none of the 2 target prompts"):
        get_method("uce").erase(tiny_sd, request, UCEConfig(contexts="prompts"))
    with pytest.raises(InvalidSettingError, match="contexts must be one of"):
        UCEConfig(contexts="templates")
