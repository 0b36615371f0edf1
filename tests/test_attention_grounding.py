"""Token-grounded cross-attention for toy-sd training: caption words land on their objects' cells, the loss is
TokenCompose's token loss over cells, and the recording processor changes nothing and leaves cleanly."""

import pytest
import torch

from erasekit.toy.attention_grounding import (
    AttentionMaps,
    binding_loss,
    cell_mass,
    grounding_loss,
    grounding_targets,
)
from erasekit.toy.scenes import Scene, SceneObject, caption_words, object_word_positions
from erasekit.toy.tokenizers import build_clip_tokenizer
from erasekit.toy.world import COLOURS, PATTERNS, SHAPES


def _obj(cell, shape, colour, pattern="plain"):
    return SceneObject(cell, SHAPES.index(shape), COLOURS.index(colour), PATTERNS.index(pattern))


def test_each_phrase_lands_on_its_own_object():
    scene = Scene((_obj(3, "star", "red"), _obj(0, "circle", "blue", "striped")))
    text = "a photo of a blue circle with stripes next to a red star"
    words = caption_words(text)
    placed = dict(object_word_positions(text, scene))
    assert [words[p] for p in placed[1]] == ["blue", "circle", "with", "stripes"]
    assert [words[p] for p in placed[0]] == ["red", "star"]


def test_a_phrase_that_fits_two_objects_is_left_out():
    scene = Scene((_obj(0, "star", "red"), _obj(1, "circle", "red")))
    text = "a red thing and a red star"
    placed = object_word_positions(text, scene)
    assert placed == [(0, (5, 6))]  # "a red thing" fits both; "a red star" only the star


def test_targets_cover_every_token_of_a_hyphenated_word():
    tokenizer = build_clip_tokenizer()
    scene = Scene((_obj(2, "star", "green"),))
    text = "an emerald five-pointed shape"
    targets = grounding_targets([text, ""], [scene, scene], tokenizer, 16)
    tokens = tokenizer.tokenize(text)
    assert len(tokens) == 6  # five - pointed
    grounded = [tokens[i - 1] for i in range(16) if targets[0, i] == 2]
    assert grounded == ["emerald</w>", "five</w>", "-</w>", "pointed</w>", "shape</w>"]
    assert set(targets[0].tolist()) == {-1, 2} and (targets[1] == -1).all()


def _maps(per_token_cells: list[list[float]], side: int = 4) -> torch.Tensor:
    """(1, side², L) maps whose token l puts share per_token_cells[l][c] of its mass in cell c, spread evenly."""
    half = side // 2
    maps = torch.zeros(1, side, side, len(per_token_cells))
    for token, shares in enumerate(per_token_cells):
        for cell, share in enumerate(shares):
            r, c = divmod(cell, 2)
            maps[0, r * half : (r + 1) * half, c * half : (c + 1) * half, token] = share / half**2
    return maps.reshape(1, side * side, -1)


def test_loss_is_zero_when_local_and_grows_with_the_mass_outside():
    targets = torch.tensor([[1, -1]])
    local = _maps([[0, 1, 0, 0], [0.25] * 4])
    assert torch.allclose(cell_mass(local)[0, 0], torch.tensor([0.0, 1, 0, 0]))
    assert float(grounding_loss([local], targets)) == pytest.approx(0.0, abs=1e-6)
    uniform = _maps([[0.25] * 4, [0, 1, 0, 0]])
    assert float(grounding_loss([uniform], targets)) == pytest.approx(0.75**2)
    assert float(grounding_loss([local, uniform], targets)) == pytest.approx(0.75**2 / 2)
    assert float(grounding_loss([uniform], targets, weight=torch.tensor([0.0]))) == 0.0
    assert float(grounding_loss([uniform], torch.tensor([[-1, -1]]))) == 0.0


def test_recorder_keeps_outputs_and_gradients_and_removes_cleanly(tiny_sd):
    unet = tiny_sd.pipeline.unet
    before = {name: type(p) for name, p in unet.attn_processors.items()}
    size = unet.config.sample_size
    x = torch.randn(2, unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 5, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 500])
    with torch.no_grad():
        plain = unet(x, t, text).sample
    recorder = AttentionMaps(unet)
    out = unet(x, t, text).sample
    cross_layers = sum("attn2" in name for name in before)
    assert len(recorder.maps) == cross_layers and all(m.shape[0] == 2 and m.shape[-1] == 5 for m in recorder.maps)
    assert torch.allclose(out, plain, atol=1e-5)
    assert torch.allclose(recorder.maps[0].sum(-1), torch.ones(()), atol=1e-5)
    recorder.maps[0][:, :, 1].sum().backward()
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight.grad is not None
    recorder.remove()
    assert {name: type(p) for name, p in unet.attn_processors.items()} == before and not recorder.maps


def test_binding_loss_is_zero_for_phrase_mates_on_one_cell_and_objects_apart():
    targets = torch.tensor([[1, 1, 2, 2]])
    bound = _maps([[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    assert float(binding_loss([bound], targets)) == pytest.approx(0.0, abs=1e-6)
    # The true cells do not enter: the same words bound to other cells cost nothing either.
    elsewhere = _maps([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]])
    assert float(binding_loss([elsewhere], targets)) == pytest.approx(0.0, abs=1e-6)
    # A modifier looking at the other object's cell: spread (1/2 per token of the first object, mean over 4
    # tokens = 0.25) plus the overlap of the two objects' means (0.5).
    split = _maps([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    assert float(binding_loss([split], targets)) == pytest.approx(0.25 + 0.5)
    uniform = _maps([[0.25] * 4] * 4)
    assert float(binding_loss([uniform], targets)) == pytest.approx(1.0)
    assert float(binding_loss([uniform], torch.full((1, 4), -1))) == 0.0
