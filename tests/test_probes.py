"""The instrument probes run end to end on tiny random v2 pipelines (plumbing: slot groups, shapes, rates)."""

import random

import torch

from erasekit.toy.pipelines import tiny_scene_flux_pipeline, tiny_scene_sd_pipeline
from erasekit.toy.probes import (
    FLUX_SLOT_GROUPS,
    SLOT_GROUPS,
    _encode,
    _groups,
    attention_locality,
    clean_phrase,
    locality_prompts,
    shapes_drawn,
    splice_pairs,
    splice_test,
)
from erasekit.toy.scene_judge import SceneJudge
from erasekit.toy.scenes import Scene, SceneObject, caption, caption_words, object_word_positions


def _judge():
    torch.manual_seed(0)
    return SceneJudge(width=8, feature_dim=16, style_width=8).eval()


def test_splice_pairs_differ_in_one_value_and_keep_length():
    tok = tiny_scene_sd_pipeline().tokenizer
    for head in ("shape", "colour", "pattern", "style"):
        for pair in splice_pairs(head, 10):
            assert pair.value_a != pair.value_b
            a, b = tok(pair.a).input_ids, tok(pair.b).input_ids
            assert len(a) == len(b), (pair.a, pair.b)
            differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
            assert len(differ) == (3 if head == "style" else 1), (pair.a, pair.b)


def test_slot_groups_partition_the_sequence():
    ids_a = torch.tensor([5, 1, 2, 3, 9, 9, 9])
    ids_b = torch.tensor([5, 1, 7, 3, 9, 9, 9])
    g = _groups(ids_a, ids_b, eos_id=9)
    assert g["word"].tolist() == [False, False, True, False, False, False, False]
    assert g["word_to_eot"].tolist() == [False, False, True, True, False, False, False]
    assert g["eot"].nonzero().flatten().tolist() == [4]
    assert g["padding"].nonzero().flatten().tolist() == [5, 6]
    assert (g["eot_padding"] == (g["eot"] | g["padding"])).all()


def test_splice_test_runs_on_sd_and_flux():
    judge = _judge()
    for pipe, groups in ((tiny_scene_sd_pipeline(), SLOT_GROUPS), (tiny_scene_flux_pipeline(), FLUX_SLOT_GROUPS)):
        rates = splice_test(pipe, judge, splice_pairs("shape", 2), seeds_per_pair=1, steps=2, guidance=2.0)
        assert set(rates) == {"full", "none", *groups}
        assert all(0.0 <= v <= 1.0 for v in rates.values())


def test_attention_locality_restores_processors():
    pipe = tiny_scene_sd_pipeline()
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    out = attention_locality(pipe, _judge(), locality_prompts(2), steps=2, guidance=2.0)
    assert out["prompts"] == 2 and 0 <= out["judged"] <= 2 and len(out["by_step_third"]) == 3
    assert 0.0 <= out["colour_locality"] <= 1.0
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before


def test_binding_swap_pairs_bind_the_same_words_the_other_way_round():
    from erasekit.toy.probes import binding_swap, binding_swap_prompts
    from erasekit.toy.scenes import parse_caption

    pairs = binding_swap_prompts(3)
    for a, b in pairs:
        pa, pb = parse_caption(a).objects, parse_caption(b).objects
        assert [o["shape"] for o in pa] == [o["shape"] for o in pb]
        assert [o["colour"] for o in pa] == [o["colour"] for o in pb][::-1] and pa[0]["colour"] != pa[1]["colour"]
    out = binding_swap(tiny_scene_sd_pipeline(), _judge(), pairs, steps=2, guidance=2.0)
    assert out["pairs"] == 3 and all(0.0 <= out[k] <= 1.0 for k in ("same_cells", "same_shapes", "same_colours"))


def test_shapes_drawn_names_the_duplicated_shape_by_caption_order():
    named = [[0, 1, 0], [3, 2, 1]]  # object 0 is shape 0, object 1 shape 3
    assert shapes_drawn(named, [1, 0], [[3, 0, 0], [0, 5, 2]]) == "both"
    assert shapes_drawn(named, [1, 0], [[3, 0, 0], [3, 5, 2]]) == "first twice"  # object 1 was named first
    assert shapes_drawn(named, [0, 1], [[3, 0, 0], [3, 5, 2]]) == "second twice"
    assert shapes_drawn(named, [0, 1], [[3, 0, 0]]) == "other"
    assert shapes_drawn([[2, 0, 0], [2, 1, 1]], [0, 1], [[2, 0, 0], [2, 1, 1]]) is None  # one shape named twice
    assert shapes_drawn(named, [0], [[0, 1, 0]]) is None  # a phrase the judge could not place


def test_clean_phrase_replaces_one_phrase_by_its_lone_encoding():
    pipe = tiny_scene_sd_pipeline()
    scene = Scene((SceneObject(0, 0, 1, 1), SceneObject(3, 2, 4, 0)))
    text = caption(scene, random.Random(0), canonical=True)
    placed = object_word_positions(text, scene)
    assert len(placed) == 2
    states = _encode(pipe, [text])[1]
    cleaned = clean_phrase(pipe, states, [text], [scene], 1)
    second = placed[1][1]
    words = caption_words(text)
    alone = _encode(pipe, ["a " + " ".join(words[p] for p in second)])[1]
    for k, p in enumerate(second):
        torch.testing.assert_close(cleaned[0, p + 1], alone[0, k + 2])
    untouched = [i for i in range(states.shape[1]) if i - 1 not in second]
    torch.testing.assert_close(cleaned[0, untouched], states[0, untouched])
    assert not torch.allclose(cleaned, states)
