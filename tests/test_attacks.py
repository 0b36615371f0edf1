"""Attacks against erased models, on tiny pipelines built in code (and one test on the shipped toy-sd)."""

from __future__ import annotations

import math

import pytest
import torch

from erasekit.errors import UnsupportedModelError
from erasekit.eval.attacks import (
    AttackResult,
    RingABellConfig,
    UnlearnDiffAtkConfig,
    concept_vector,
    replay_attack,
    ring_a_bell_attack,
    ring_a_bell_prompt,
    unlearndiffatk_attack,
    unlearndiffatk_prompt,
    word_vocabulary,
)
from erasekit.eval.attacks.ring_a_bell import _encode_ids
from erasekit.prompt_sets import load_prompt_set


class BrightJudge:
    """A judge for random pipelines: the 'concept' is present when the image is brighter than a cut."""

    name = "bright"

    def __init__(self, cut: float):
        self.cut = cut

    def presence(self, images, targets):
        score = images.float().mean(dim=(1, 2, 3))
        return score, score > self.cut


def test_word_vocabulary_round_trips_and_forbids(tiny_sd):
    ids, words = word_vocabulary(tiny_sd.tokenizer, forbid=["star", "Red"])
    assert len(words) > 20 and "star" not in words and "red" not in words
    encoded = tiny_sd.tokenizer(words, add_special_tokens=False).input_ids
    assert [e for e in encoded] == [[i] for i in ids.tolist()]
    assert all(w.isalpha() for w in words)


def test_ring_a_bell_search_finds_a_prompt_close_to_its_target(tiny_sd):
    ids, words = word_vocabulary(tiny_sd.tokenizer)
    secret = torch.tensor([[3, 7, 11, 5]])
    target = _encode_ids(tiny_sd, ids[secret])[0]
    config = RingABellConfig(n_tokens=4, population=32, generations=40, seed=1)
    prompt, error = ring_a_bell_prompt(tiny_sd, target, config, (ids, words))
    # The search must beat what random prompts of the same length reach.
    random_rows = torch.randint(len(words), (64, 4), generator=torch.Generator().manual_seed(0))
    random_error = (_encode_ids(tiny_sd, ids[random_rows]) - target).pow(2).flatten(1).mean(1)
    assert error < float(random_error.min())
    assert len(prompt.split()) == 4 and all(w in words for w in prompt.split())
    # The prompt, written as text, encodes to what the search scored.
    again = tiny_sd.encode([prompt]).embeds[0]
    assert (again - target).pow(2).mean().item() == pytest.approx(error, rel=1e-4)


def test_concept_vector_is_the_mean_difference(tiny_sd):
    with_, without = ["a red star", "a blue star"], ["a red circle", "a blue circle"]
    vector = concept_vector(tiny_sd, with_, without)
    expected = (tiny_sd.encode(with_).embeds - tiny_sd.encode(without).embeds).mean(0)
    torch.testing.assert_close(vector, expected)
    with pytest.raises(ValueError):
        concept_vector(tiny_sd, with_, without[:1])


def test_unlearndiffatk_lowers_the_loss_and_keeps_the_prompt(tiny_sd):
    vocab = word_vocabulary(tiny_sd.tokenizer, forbid=["star"])
    flags = [p.requires_grad for p in tiny_sd.denoiser.parameters()]
    weights = {k: v.clone() for k, v in tiny_sd.denoiser.state_dict().items()}
    target = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    few = UnlearnDiffAtkConfig(n_tokens=3, steps=0, n_timesteps=4, lr=0.05)
    start_prompt, start_loss = unlearndiffatk_prompt(tiny_sd, "a red star", target, few, vocab)
    many = UnlearnDiffAtkConfig(n_tokens=3, steps=25, n_timesteps=4, lr=0.05)
    prompt, loss = unlearndiffatk_prompt(tiny_sd, "a red star", target, many, vocab)
    assert loss < start_loss  # the optimisation found better words than its starting point
    words = prompt.split()
    assert prompt.endswith("a red star") and len(words) == 3 + 3 and "star" not in words[:3]
    # The hook is gone, the parameters' flags are as they were and no weight moved.
    assert [p.requires_grad for p in tiny_sd.denoiser.parameters()] == flags
    assert all(torch.equal(v, weights[k]) for k, v in tiny_sd.denoiser.state_dict().items())
    assert not tiny_sd.pipeline.text_encoder.get_input_embeddings()._forward_hooks


def test_attack_results_rates_and_saved_prompts_replay(tiny_sd, tmp_path):
    judge = BrightJudge(cut=0.5)
    prompts, seeds = ["a red star", "a blue circle", "a green heart"], [0, 1, 2]
    replay = replay_attack(tiny_sd, prompts, seeds, judge, "bright", num_inference_steps=2)
    assert replay.pre_present == replay.present and len(replay.present) == 3
    result = AttackResult(
        "x",
        "c",
        ["p1", "p2", "p3", "p4"],
        ["s1", "s2", "s3", "s4"],
        [1, 2, 3, 4],
        present=[True, True, False, True],
        scores=[1, 1, 0, 1],
        pre_present=[True, False, False, False],
    )
    assert result.attack_success_rate == 0.75
    assert result.pre_attack_rate == 0.25
    assert result.asr_on_erased == pytest.approx(2 / 3)
    path = result.save_prompts(tmp_path / "found.csv")
    loaded = load_prompt_set("csv", path)
    assert loaded.prompts == ["p1", "p2", "p3", "p4"] and loaded.seeds == [1, 2, 3, 4]
    assert loaded.extra["source_prompt"] == ["s1", "s2", "s3", "s4"]
    assert math.isnan(AttackResult("x", "c", [], [], [], [], []).attack_success_rate)


def test_attacks_end_in_generation_through_the_edited_pipeline(tiny_sd):
    judge = BrightJudge(cut=-1.0)  # everything counts: checks the plumbing, not the judge
    config = RingABellConfig(n_tokens=3, population=8, generations=2)
    result = ring_a_bell_attack(
        tiny_sd,
        ["a red circle"],
        [5],
        judge,
        "star",
        with_concept=["a red star"],
        without_concept=["a red circle"],
        config=config,
        progress=False,
        num_inference_steps=2,
    )
    assert result.present == [True] and result.pre_present == [True]
    assert result.prompts[0] != "a red circle" and len(result.prompts[0].split()) == 3
    images = torch.rand(1, 3, 32, 32)
    result = unlearndiffatk_attack(
        tiny_sd,
        ["a red star"],
        [5],
        images,
        judge,
        "star",
        UnlearnDiffAtkConfig(n_tokens=2, steps=1, n_timesteps=2),
        progress=False,
        num_inference_steps=2,
    )
    assert result.images.shape == (1, 3, 32, 32) and len(result.config["final_losses"]) == 1


def test_white_box_attacks_refuse_flux(tiny_flux):
    judge = BrightJudge(cut=0.5)
    with pytest.raises(UnsupportedModelError, match="replay"):
        unlearndiffatk_attack(tiny_flux, ["a red star"], [0], torch.rand(1, 3, 32, 32), judge, "star")
    with pytest.raises(UnsupportedModelError):
        ring_a_bell_attack(
            tiny_flux, ["a red circle"], [0], judge, "star", with_concept=["a star"], without_concept=["a circle"]
        )
    with pytest.raises(ValueError, match="empty"):
        replay_attack(tiny_flux, [], [], judge, "star")


def test_searches_forbid_the_concept_and_for_nudity_every_nudity_word():
    from erasekit.eval.attacks import forbidden_words

    assert forbidden_words("star", (), True) == ["star"]
    assert {"nude", "naked", "nudity"} <= set(forbidden_words("nudity", (), True))
    assert forbidden_words("star", (), False) == []


def test_word_vocabulary_is_in_the_same_order_for_every_tokenizer_instance():
    from erasekit.toy.pipelines import tiny_sd_pipeline

    first = word_vocabulary(tiny_sd_pipeline(seed=0).tokenizer)
    second = word_vocabulary(tiny_sd_pipeline(seed=0).tokenizer)
    assert first[1] == second[1] and torch.equal(first[0], second[0])
    assert first[0].tolist() == sorted(first[0].tolist())
