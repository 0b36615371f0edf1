"""Textual inversion on the erased model: the loss through the edited pipeline goes down, only the new token's
vector is learned (no weight moves, the tokenizer is as it was afterwards), the embedding round-trips through
safetensors and is refused by another text encoder."""

import pytest
import torch

from erasekit.errors import InvalidArgumentError
from erasekit.eval.attacks.textual_inversion import (
    TextualInversionConfig,
    learn_embedding,
    loaded_embedding,
    save_embedding,
    textual_inversion_attack,
    token_prompt,
)
from erasekit.generate import generate
from erasekit.models import from_pipeline
from erasekit.toy.pipelines import tiny_sd_pipeline


def _images(n=2):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_token_takes_the_concepts_place():
    assert token_prompt("a red striped star", "star", "<t>") == "a red striped <t>"
    assert token_prompt("a red circle", "star", "<t>") == "<t> a red circle"


def test_learning_lowers_the_loss_and_moves_no_weight(tiny_sd):
    weights = {k: v.clone() for k, v in tiny_sd.denoiser.state_dict().items()}
    table = tiny_sd.pipeline.text_encoder.get_input_embeddings().weight.clone()
    config = TextualInversionConfig(steps=40, batch_size=2, lr=0.05, flip=False)
    vector, losses = learn_embedding(tiny_sd, _images(), ["a red star", "a blue star"], "star", config, progress=False)
    assert vector.shape == (table.shape[1],)
    assert sum(losses[-10:]) < sum(losses[:10])
    assert all(torch.equal(v, weights[k]) for k, v in tiny_sd.denoiser.state_dict().items())
    assert torch.equal(tiny_sd.pipeline.text_encoder.get_input_embeddings().weight, table)
    assert not tiny_sd.pipeline.text_encoder.get_input_embeddings()._forward_hooks


def test_attack_generates_with_the_token_then_unloads_it(tiny_sd, tmp_path):
    class Bright:
        name = "bright"

        def presence(self, images, targets):
            score = images.float().mean(dim=(1, 2, 3))
            return score, score > 0.5

    vocab = len(tiny_sd.tokenizer)
    result = textual_inversion_attack(
        tiny_sd,
        None,
        ["a red star", "a blue star"],
        [0, 1],
        _images(),
        Bright(),
        "star",
        TextualInversionConfig(steps=2, batch_size=1),
        progress=False,
        num_inference_steps=2,
    )
    assert result.prompts == ["a red <erasekit-inverted>", "a blue <erasekit-inverted>"]
    assert len(tiny_sd.tokenizer) == vocab  # unloaded again
    path = save_embedding(
        tmp_path / "e.safetensors", "<erasekit-inverted>", result.embedding["vector"], tiny_sd, "star"
    )
    with loaded_embedding(tiny_sd, path) as token:
        again = generate(tiny_sd, [f"a red {token}"], [0], num_inference_steps=2)
    assert torch.allclose(again[0], result.images[0], atol=1e-5)  # the replay draws what the attack drew
    assert len(tiny_sd.tokenizer) == vocab


def test_an_embedding_of_another_text_encoder_is_refused(tiny_sd, tmp_path):
    other = from_pipeline(tiny_sd_pipeline(seed=1), name="other")
    vector = torch.randn(tiny_sd.pipeline.text_encoder.config.hidden_size)
    path = save_embedding(tmp_path / "e.safetensors", "<t>", vector, other, "star")
    with pytest.raises(InvalidArgumentError, match="another text encoder"):
        with loaded_embedding(tiny_sd, path):
            pass
    with pytest.raises(InvalidArgumentError, match="no embedding file"):
        with loaded_embedding(tiny_sd, tmp_path / "missing.safetensors"):
            pass


def test_textual_inversion_refuses_flux_and_gie(tiny_flux, tiny_sd):
    from erasekit.errors import InvalidEditError, UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="textual inversion"):
        learn_embedding(tiny_flux, _images(1), ["a star"], "star", TextualInversionConfig(steps=1), progress=False)
    import erasekit.api as ek

    ek.apply_edit(ek.erase(tiny_sd, "gie", ["star"], settings={"scale": -4.0}), tiny_sd.pipeline)
    with pytest.raises(InvalidEditError, match="GIE"):
        learn_embedding(
            tiny_sd, _images(1), ["a star"], "star", TextualInversionConfig(steps=1), reference=tiny_sd, progress=False
        )
