"""GIE: token alignment, the attention control and its sampler, the adapter, the Edit, bad input."""

import pytest
import torch

from erasekit.edits import Edit
from erasekit.errors import InvalidEditError, UnsupportedModelError
from erasekit.generate import generate
from erasekit.methods import EraseRequest, apply_edit, get_method, remove_edit
from erasekit.methods.gie import (
    GIEConfig,
    InhibitedSampler,
    InhibitionAdapter,
    Judge,
    TargetTokenError,
    align,
    best_scale,
    count_cross_attention_layers,
    fit_adapter,
    label_prompts,
    token_interval,
)
from erasekit.methods.gie.method import unerased_note

PROMPTS = ["a red striped star", "a blue dotted circle"]


def _gens(n=len(PROMPTS)):
    return [torch.Generator().manual_seed(10 + i) for i in range(n)]


# ------------------------------------------------------------------------------------------ token interval


def test_alignment_flags_the_appended_tokens():
    # The spec's example: P = [SOT, a, b, c, d, EOT], P' = P with t1 t2 before EOT.
    source, inserted = align([0, 1, 2, 3, 4, 9], [0, 1, 2, 3, 4, 7, 8, 9])
    assert inserted == [False] * 5 + [True, True, False]
    assert source == [0, 1, 2, 3, 4, -1, -1, 5]


def test_alignment_flags_the_appended_copy_of_a_repeated_word():
    source, inserted = align([0, 1, 5, 9], [0, 1, 5, 5, 9])
    assert inserted == [False, False, False, True, False]
    assert source == [0, 1, 2, -1, 3]


def test_token_interval_on_the_clip_tokenizer(tiny_sd):
    tok = tiny_sd.tokenizer
    iv = token_interval(tok, "a red striped star", "star")
    plain = tok("a red striped star").input_ids
    assert iv.positions == [len(plain) - 1]  # the old EOT slot
    assert iv.source[len(plain)] == len(plain) - 1  # P''s EOT copies P's EOT
    assert iv.target_index[iv.positions[0]] == 1
    assert len(iv.source) == tok.model_max_length and not iv.truncated


def test_long_prompts_are_cut_so_the_target_always_fits(tiny_sd):
    tok = tiny_sd.tokenizer
    long_prompt = " ".join(["red star"] * 60)
    iv = token_interval(tok, long_prompt, "striped circle")
    assert iv.truncated
    assert len(iv.positions) == 2 and max(iv.positions) < tok.model_max_length - 1
    assert len(tok(iv.edited_prompt).input_ids) <= tok.model_max_length


def test_targets_that_tokenize_to_nothing_or_do_not_fit_are_refused(tiny_sd):
    with pytest.raises(TargetTokenError, match="tokenizes to nothing"):
        token_interval(tiny_sd.tokenizer, "a star", "")
    with pytest.raises(TargetTokenError, match="holds"):
        token_interval(tiny_sd.tokenizer, "a star", " ".join(["star"] * 80))
    with pytest.raises(TargetTokenError):
        InhibitedSampler(tiny_sd.pipeline, ["   "])


# ------------------------------------------------------------------------------------------------ sampler


def test_processors_defer_to_diffusers_when_idle_and_are_removed_exactly(tiny_sd):
    pipe = tiny_sd.pipeline
    before = dict(pipe.unet.attn_processors)
    plain = pipe(PROMPTS, generator=_gens(), num_inference_steps=4, output_type="pt").images
    sampler = InhibitedSampler(pipe, ["star"], default_scale=-2.0)
    sampler.install()
    assert all(type(p).__name__ == "InhibitionProcessor" for p in pipe.unet.attn_processors.values())
    idle = pipe(PROMPTS, generator=_gens(), num_inference_steps=4, output_type="pt").images
    torch.testing.assert_close(idle, plain)
    sampler.remove()
    after = pipe.unet.attn_processors
    assert all(after[name] is before[name] for name in before)


def test_branch_a_is_the_plain_pipeline_and_the_inhibitor_changes_branch_b(tiny_sd):
    pipe = tiny_sd.pipeline
    plain = pipe(PROMPTS, generator=_gens(), num_inference_steps=5, output_type="pt").images
    sampler = InhibitedSampler(pipe, ["star"])
    zero = sampler(PROMPTS, _gens(), num_inference_steps=5, output_type="pt", weights=0.0, return_plain=True)
    torch.testing.assert_close(zero.plain_images, plain, atol=1e-4, rtol=0)
    strong = sampler(PROMPTS, _gens(), num_inference_steps=5, output_type="pt", weights=-50.0)
    assert (strong.images - zero.images).abs().mean() > 1e-4
    assert not sampler.installed or all(
        type(p).__name__ == "InhibitionProcessor" for p in pipe.unet.attn_processors.values()
    )


def test_sign_guard_clamps_positive_weights_unless_allowed(tiny_sd):
    sampler = InhibitedSampler(tiny_sd.pipeline, ["star"])
    pos = sampler(PROMPTS, _gens(), num_inference_steps=3, output_type="pt", weights=5.0)
    zero = sampler(PROMPTS, _gens(), num_inference_steps=3, output_type="pt", weights=0.0)
    torch.testing.assert_close(pos.images, zero.images)
    assert (pos.weights <= 0).all()
    with pytest.raises(ValueError, match="w ≤ 0"):
        GIEConfig(scale=1.0)


def test_features_have_one_value_per_cross_attention_layer_and_token(tiny_sd):
    sampler = InhibitedSampler(tiny_sd.pipeline, ["star", "striped"])
    features = sampler.features(PROMPTS, _gens(), num_inference_steps=5)
    layers = count_cross_attention_layers(tiny_sd.pipeline.unet)
    assert features.shape == (2, 2, layers) and sampler.n_tokens == 2
    assert ((features > 0) & (features < 1)).all()


def test_adapter_weights_per_token_and_the_code_embedding_variant(tiny_sd):
    layers = count_cross_attention_layers(tiny_sd.pipeline.unet)
    adapter = InhibitionAdapter(layers)
    with torch.no_grad():
        adapter.net[-1].bias.fill_(-3.0)
        adapter.net[-1].weight.zero_()
    sampler = InhibitedSampler(tiny_sd.pipeline, ["star", "circle"], adapter=adapter)
    out = sampler(PROMPTS, _gens(), num_inference_steps=3, output_type="pt")
    torch.testing.assert_close(out.weights, torch.full((2, 2), -3.0))
    from erasekit.methods.gie import ControlSettings

    code = InhibitedSampler(tiny_sd.pipeline, ["star"], ControlSettings(embedding_source="edited_prompt"))
    paper = InhibitedSampler(tiny_sd.pipeline, ["star"])
    a = code(PROMPTS, _gens(), num_inference_steps=3, output_type="pt", weights=-2.0).images
    b = paper(PROMPTS, _gens(), num_inference_steps=3, output_type="pt", weights=-2.0).images
    assert (a - b).abs().max() > 0
    with pytest.raises(ValueError, match="embedding_source"):
        InhibitedSampler(tiny_sd.pipeline, ["star"], ControlSettings(embedding_source="nope"))


# ------------------------------------------------------------------------------------------------ adapter


def test_best_scale_prefers_absent_then_closest_then_least_present():
    grid = [-1.0, -2.0, -4.0]
    present = torch.tensor([[True, True, False], [False, True, False], [False, True, False]])
    presence = torch.tensor([[0.9, 0.8, 0.1], [0.1, 0.7, 0.2], [0.0, 0.6, 0.1]])
    distance = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.2], [0.1, 0.0, 0.9]])
    present[0, 0], present[1, 0] = True, True
    # prompt 0: absent only at -4; prompt 1: never absent, -4 least present; prompt 2: absent everywhere, -1 closest.
    labels = best_scale(presence, distance, present, grid)
    assert labels.tolist() == [-4.0, -4.0, -1.0]


def test_fit_adapter_regresses_labels():
    torch.manual_seed(0)
    x = torch.rand(40, 5)
    y = -1 - 4 * x[:, 0]
    adapter, loss = fit_adapter(x, y, epochs=600)
    assert loss < 0.05
    with pytest.raises(ValueError, match="takes 5 features"):
        adapter(torch.rand(3, 7))


class _MeanJudge(Judge):
    """A stand-in judge for random tiny models: the concept counts as gone once the image is dark enough."""

    name = "mean"

    def presence(self, images, targets):
        score = images.mean(dim=(1, 2, 3))
        return score, score > score.median()


def test_label_prompts_runs_the_grid_and_labels_each_prompt(tiny_sd):
    sampler = InhibitedSampler(tiny_sd.pipeline, ["star"])
    grid = [-1.0, -8.0]
    out = label_prompts(sampler, _MeanJudge(), PROMPTS, [0, 1], grid, 3, 7.5, 32, 32, progress=False)
    assert out["features"].shape[:2] == (2, 1)
    assert out["presence"].shape == (2, 2) and set(out["labels"].tolist()) <= set(grid)


# ------------------------------------------------------------------------------------------- edit & method


def test_fixed_scale_edit_round_trip_apply_and_remove(tiny_sd, tmp_path):
    method = get_method("gie")
    edit = method.erase(tiny_sd, EraseRequest(targets=["star"]), method.make_config({"scale": -4.0}))
    assert edit.kind == "inference_control" and not edit.tensors
    edit.save(tmp_path / "e")
    loaded = Edit.load(tmp_path / "e")
    plain = generate(tiny_sd, PROMPTS, 3, num_inference_steps=4)
    apply_edit(loaded, tiny_sd.pipeline)
    with pytest.raises(InvalidEditError, match="already applied"):
        apply_edit(loaded, tiny_sd.pipeline)
    edited = generate(tiny_sd, PROMPTS, 3, num_inference_steps=4)
    assert (edited - plain).abs().max() > 0
    remove_edit(loaded, tiny_sd.pipeline)
    torch.testing.assert_close(generate(tiny_sd, PROMPTS, 3, num_inference_steps=4), plain)


def test_adapter_edit_checks_the_backbone_it_was_trained_for(tiny_sd):
    adapter = InhibitionAdapter(16)
    edit = Edit(
        kind="inference_control",
        method="gie",
        config={"hidden": [64, 32]},
        base_model="sd-1.4",
        concepts=["star"],
        family="sd",
        data={"feature_size": 16},
        tensors={"adapter." + k: v for k, v in adapter.state_dict().items()},
    )
    with pytest.raises(InvalidEditError, match="16 cross-attention layers"):
        apply_edit(edit, tiny_sd.pipeline)


def test_gie_refuses_flux(tiny_flux):
    method = get_method("gie")
    with pytest.raises(UnsupportedModelError):
        method.erase(tiny_flux, EraseRequest(targets=["star"]), method.make_config({"scale": -2.0}))
    edit = Edit(
        kind="inference_control",
        method="gie",
        config={},
        base_model="x",
        concepts=["star"],
        family="sd",
        data={"scale": -2.0},
    )
    with pytest.raises(UnsupportedModelError, match="FLUX"):
        get_method("gie").apply_edit(edit, tiny_flux.pipeline)


# -------------------------------------------------------------------------------------- judges & toy weights


def test_judges_route_by_concept_and_nudenet_runs_offline():
    from erasekit.methods.gie import NudeNetJudge, ToyJudge, make_judge

    assert isinstance(make_judge("auto", ["star"], toy=True), ToyJudge)
    judge = make_judge("auto", ["nudity"], toy=False)
    assert isinstance(judge, NudeNetJudge)
    images = torch.full((2, 3, 64, 64), 0.5)
    score, present, distance = judge.judge(images, ["nudity"], images)
    assert not present.any() and (distance == 0).all()
    with pytest.raises(ValueError, match="no judge"):
        make_judge("auto", ["dog"], toy=False)
    with pytest.raises(ValueError, match="judge_path"):
        make_judge("clip", ["dog"], toy=False)


def test_toy_sd_branch_b_with_zero_weight_matches_branch_a():
    """With w = 0 and the paper's embedding, B copies A's maps over A's own embeddings: the images agree."""
    from erasekit.models import load

    backbone = load("toy-sd")
    prompts = ["a red striped star", "a blue dotted circle", "a green plain heart", "a purple striped square"]
    sampler = InhibitedSampler(backbone.pipeline, ["star"])
    kwargs = dict(num_inference_steps=25, guidance_scale=7.5, output_type="pt", return_plain=True)
    zero = sampler(prompts, _gens(4), weights=0.0, **kwargs)
    strong = sampler(prompts, _gens(4), weights=-256.0, **kwargs)
    gap_zero = (zero.images - zero.plain_images).abs().mean()
    gap_strong = (strong.images - strong.plain_images).abs().mean()
    assert gap_zero < 0.01 and gap_zero < gap_strong / 5


def test_two_samplers_on_one_pipeline_each_get_their_own_control(tiny_sd):
    pipe = tiny_sd.pipeline
    before = dict(pipe.unet.attn_processors)
    strong = InhibitedSampler(pipe, ["star"], default_scale=-50.0)
    zero = InhibitedSampler(pipe, ["star"], default_scale=0.0)
    kwargs = dict(num_inference_steps=4, output_type="pt")
    a1 = strong(PROMPTS, _gens(), **kwargs).images
    zero(PROMPTS, _gens(), **kwargs)
    a2 = strong(PROMPTS, _gens(), **kwargs).images  # must take the control back, not run zero's processors
    torch.testing.assert_close(a1, a2)
    strong.remove()
    zero.remove()
    after = pipe.unet.attn_processors
    assert all(after[name] is before[name] for name in before)


class _AlwaysThereJudge(_MeanJudge):
    name = "always"

    def presence(self, images, targets):
        score = images.mean(dim=(1, 2, 3))
        return score, torch.ones_like(score, dtype=torch.bool)


def test_unerased_note_counts_the_prompts_no_scale_cleared():
    grid = [-1.0, -8.0]
    assert unerased_note(torch.tensor([[True, False], [False, False]]), grid) == ""
    partial = unerased_note(torch.tensor([[True, True], [True, False]]), grid)
    assert "1 of 2 training prompts" in partial and "w = -8" in partial and "unlikely" not in partial
    assert "unlikely to erase" in unerased_note(torch.ones(2, 3, dtype=torch.bool), grid)


def test_training_an_adapter_that_never_clears_the_concept_warns(tiny_sd, monkeypatch):
    import erasekit.methods.gie.method as gie_method

    monkeypatch.setattr(gie_method, "make_judge", lambda *args, **kwargs: _AlwaysThereJudge())
    method = get_method("gie")
    config = method.make_config({"train_prompts": 2, "scale_grid": [-1.0, -2.0], "epochs": 5, "num_inference_steps": 2})
    edit = method.erase(tiny_sd, EraseRequest(targets=["star"]), config)
    assert "2 of 2 training prompts" in edit.notes and "unlikely to erase" in edit.notes
    assert edit.data["training"]["absent_share_by_scale"] == {"-1": 0.0, "-2": 0.0}


# ------------------------------------------------------------------------ paper vs released code (§1.4–1.6)


def test_released_embedding_puts_the_first_target_token_in_the_eot_slot(tiny_sd):
    """The released code fills branch B's EOT slot with c'[π(e+1)] = c'[s+1], the first target token's value."""
    from erasekit.methods.gie import ControlSettings

    pipe, prompt, target = tiny_sd.pipeline, "a red striped star", "dotted circle"
    sampler = InhibitedSampler(pipe, [target], ControlSettings(embedding_source="edited_prompt"))
    assert sampler.n_tokens == 2
    _, replaced, _, inserted, star, _ = sampler.conditioning([prompt])
    iv = token_interval(pipe.tokenizer, prompt, target)
    first, last = iv.positions
    assert inserted[0].tolist() == [first, last]
    edited = pipe.encode_prompt([iv.edited_prompt], "cpu", 1, False)[0]
    assert (edited[0, first] - edited[0, last]).abs().max() > 1e-3  # the first and last tokens tell apart
    torch.testing.assert_close(replaced[0, last + 1], edited[0, first])
    torch.testing.assert_close(replaced[0, :first], edited[0, :first])  # c' (= c, causal) before the insertion
    torch.testing.assert_close(replaced[0, last + 2 :], edited[0, last + 2 :])  # c' padding
    torch.testing.assert_close(replaced[0, first : last + 1], star[0, 1:3])  # c* at the target slots


class _RecordingAdapter(InhibitionAdapter):
    """An adapter that keeps every input it is given (the features of each call's feature pass)."""

    def __init__(self, feature_size):
        super().__init__(feature_size)
        self.seen = []

    def forward(self, features):
        self.seen.append(features.clone())
        return super().forward(features)


def test_adapter_features_do_not_depend_on_the_samplers_history(tiny_sd):
    """The feature pass runs under the full control of step 0, self-attention window included, on every call."""
    from erasekit.methods.gie import ControlSettings

    pipe = tiny_sd.pipeline
    layers = count_cross_attention_layers(pipe.unet)
    # Every level of the tiny UNet copies self-attention, and the released embedding sets B further from A, so
    # the copy moves the features (by ~1e-6 on this random UNet: the checks below are exact).
    settings = ControlSettings(self_replace_max_tokens=256, embedding_source="edited_prompt")
    kwargs = dict(num_inference_steps=5, output_type="latent")

    def fresh_call():
        adapter = _RecordingAdapter(layers)
        InhibitedSampler(pipe, ["star"], settings, adapter=adapter)(PROMPTS, _gens(), **kwargs)
        return adapter.seen[0]

    first, second = fresh_call(), fresh_call()
    adapter = _RecordingAdapter(layers)
    reused = InhibitedSampler(pipe, ["star"], settings, adapter=adapter)
    reused(PROMPTS, _gens(), **kwargs)
    reused(PROMPTS, _gens(), **kwargs)
    assert torch.equal(second, first)
    assert torch.equal(adapter.seen[0], first) and torch.equal(adapter.seen[1], first)
    standalone = InhibitedSampler(pipe, ["star"], settings).features(PROMPTS, _gens(), num_inference_steps=5)
    assert torch.equal(standalone, first)
    # The window is open at step 0, so these are the features with self-attention copied, not without.
    closed = ControlSettings(self_window=0.0, self_replace_max_tokens=256, embedding_source="edited_prompt")
    without = InhibitedSampler(pipe, ["star"], closed).features(PROMPTS, _gens(), num_inference_steps=5)
    assert ((without - first).abs() / first).max() > 1e-5


def _self_attention_levels(monkeypatch, sampler, **kwargs):
    """(query positions of the self-attention layers branch B copies from A, of all self-attention layers)."""
    from erasekit.methods.gie.attention import InhibitionProcessor

    seen, copied = set(), set()
    call, controlled = InhibitionProcessor.__call__, InhibitionProcessor._controlled

    def spy_call(self, attn, hidden_states, *args, **kw):
        if not self.cross and self.state.mode == "control":
            seen.add(hidden_states.shape[1])
        return call(self, attn, hidden_states, *args, **kw)

    def spy_controlled(self, attn, hidden_states, encoder_hidden_states):
        if not self.cross:
            copied.add(hidden_states.shape[1])
        return controlled(self, attn, hidden_states, encoder_hidden_states)

    with monkeypatch.context() as m:
        m.setattr(InhibitionProcessor, "__call__", spy_call)
        m.setattr(InhibitionProcessor, "_controlled", spy_controlled)
        sampler(PROMPTS, _gens(), num_inference_steps=5, output_type="latent", weights=-1.0, **kwargs)
    return copied, seen


def _sd1_layout_unet():
    """SD 1.x's four UNet levels at tiny width: at 32 px the latent is 16², the levels 16², 8², 4², 2²."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()


def test_released_preset_copies_self_attention_at_every_level_of_a_small_latent(tiny_sd, monkeypatch):
    from erasekit.config import InvalidSettingError

    paper, released = GIEConfig(), GIEConfig(preset="released")
    assert (paper.self_replace_max_tokens, paper.embedding_source) == (None, "paper")
    assert (released.self_replace_max_tokens, released.embedding_source) == (256, "edited_prompt")
    # The CLI's `--set preset=released`, and explicit settings over the preset's.
    assert get_method("gie").make_config({"preset": "released"}, toy=True).control() == released.control()
    mixed = GIEConfig(preset="released", embedding_source="paper")
    assert (mixed.self_replace_max_tokens, mixed.embedding_source) == (256, "paper")
    assert GIEConfig(**GIEConfig(preset="released").__dict__) == released  # a saved edit's config reloads as is
    with pytest.raises(InvalidSettingError, match="preset"):
        GIEConfig(preset="nope")
    with pytest.raises(InvalidSettingError, match="embedding_source"):
        GIEConfig(embedding_source="nope")

    pipe = tiny_sd.pipeline
    # The tiny UNet (16² latent) has two levels, 16² and 8²: the released 256 positions cover both; the paper's
    # levels (≤ latent area / 16, the 16² and 8² of SD 1.x's 64² latent) are not among them.
    copied, levels = _self_attention_levels(monkeypatch, InhibitedSampler(pipe, ["star"], released.control()))
    assert copied == levels == {256, 64}
    copied, levels = _self_attention_levels(monkeypatch, InhibitedSampler(pipe, ["star"], paper.control()))
    assert copied == set() and levels == {256, 64}
    # SD 1.x's layout: the paper's rule copies at the two coarsest levels, the released one at every level here.
    pipe.unet = _sd1_layout_unet()
    copied, levels = _self_attention_levels(monkeypatch, InhibitedSampler(pipe, ["star"], paper.control()))
    assert levels == {256, 64, 16, 4} and copied == {16, 4}
    copied, _ = _self_attention_levels(monkeypatch, InhibitedSampler(pipe, ["star"], released.control()))
    assert copied == levels
