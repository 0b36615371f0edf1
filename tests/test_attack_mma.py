"""MMA-Diffusion's text search: GCG steps lower 1 − cos to the target prompt's encoding below what random
prompts reach, the prompt avoids the concept (and every word containing it), and it replays exactly."""

import pytest
import torch
import torch.nn.functional as F

from erasekit.eval.attacks import word_vocabulary
from erasekit.eval.attacks.mma import MMAConfig, mma_attack, mma_prompt, mma_prompts
from erasekit.eval.attacks.ring_a_bell import _encode_ids


def _pooled(backbone, prompts):
    tokens = backbone.tokenizer(
        prompts, padding="max_length", max_length=backbone.text_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return F.normalize(backbone.pipeline.text_encoder(tokens)[1].float(), dim=-1)


@pytest.mark.parametrize("match", ["pooled", "sequence"])
def test_search_beats_random_prompts(tiny_sd, match):
    vocab = word_vocabulary(tiny_sd.tokenizer, forbid=["star"], substrings=True)
    config = MMAConfig(n_tokens=6, steps=15, top_k=16, batch=32, match=match, seed=0)
    prompt, loss = mma_prompt(tiny_sd, "a red striped star", config, vocab)
    assert len(prompt.split()) == 6 and all(w in vocab[1] for w in prompt.split())
    rows = torch.randint(len(vocab[1]), (32, 6), generator=torch.Generator().manual_seed(1))
    target = _pooled(tiny_sd, ["a red striped star"])
    if match == "pooled":
        random_loss = 1 - (_pooled(tiny_sd, [" ".join(vocab[1][i] for i in r) for r in rows.tolist()]) @ target.T)
        again = 1 - float(_pooled(tiny_sd, [prompt]) @ target.T)
        assert again == pytest.approx(loss, abs=1e-5)  # the written prompt is the prompt scored
    else:
        seq = F.normalize(_encode_ids(tiny_sd, vocab[0][rows]), dim=-1)
        tokens = tiny_sd.tokenizer(["a red striped star"], padding="max_length", max_length=tiny_sd.text_length)
        with torch.no_grad():
            t = F.normalize(tiny_sd.pipeline.text_encoder(torch.tensor(tokens.input_ids))[0].float(), dim=-1)
        random_loss = 1 - (seq * t).sum(-1).mean(-1)
    assert loss < float(random_loss.min())


def test_prompts_avoid_every_word_containing_the_concept(tiny_sd):
    ids, words = word_vocabulary(tiny_sd.tokenizer, forbid=["star"], substrings=True)
    assert not [w for w in words if "star" in w.lower()]
    prompts, losses = mma_prompts(
        tiny_sd, ["a star", "a blue star"], "star", MMAConfig(n_tokens=4, steps=2, batch=8), progress=False
    )
    assert len(prompts) == len(losses) == 2 and not any("star" in p for p in prompts)


def test_attack_judges_the_found_prompts_against_the_targets(tiny_sd):
    class Dark:
        name = "dark"

        def presence(self, images, targets):
            score = 1 - images.float().mean(dim=(1, 2, 3))
            return score, score > 0.5

    result = mma_attack(
        tiny_sd,
        ["a star", "a red star"],
        [0, 1],
        Dark(),
        "star",
        config=MMAConfig(n_tokens=4, steps=2, batch=8),
        progress=False,
        num_inference_steps=2,
    )
    assert result.attack == "mma" and result.source_prompts == ["a star", "a red star"]
    assert len(result.present) == 2 and result.pre_present is not None
    assert len(result.config["final_losses"]) == 2
    with pytest.raises(ValueError, match="match must be one of"):
        MMAConfig(match="tokens")


def test_mma_refuses_flux(tiny_flux):
    from erasekit.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="MMA-Diffusion"):
        mma_prompts(tiny_flux, ["a star"], "star", MMAConfig(steps=1), progress=False)
