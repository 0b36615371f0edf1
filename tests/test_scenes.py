"""Toy world v2: scenes, captions, the scene judge's plumbing, summary dropout, the latent cache."""

import random

import pytest
import torch

from erasekit.errors import UnknownConceptError
from erasekit.toy import scenes as S
from erasekit.toy.scene_judge import SceneJudge, cells_of, judge_loss
from erasekit.toy.train_scenes import LatentCache, same_count_donors, summary_dropout, summary_swap


def _scene(*objects, style="default"):
    return S.Scene(tuple(S.SceneObject(*o) for o in objects), S.STYLES.index(style))


def test_render_is_deterministic_in_range_and_sized():
    scenes = [S.random_scene(random.Random(i)) for i in range(5)]
    a = S.render_scenes(scenes, torch.Generator().manual_seed(1))
    b = S.render_scenes(scenes, torch.Generator().manual_seed(1))
    c = S.render_scenes(scenes, torch.Generator().manual_seed(2))
    assert a.shape == (5, 3, S.SCENE_SIZE, S.SCENE_SIZE)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_objects_stay_in_their_cells_and_empty_cells_are_background():
    # A red plain circle in cell 3 (bottom right) only: the other three cells hold no red pixel.
    img = S.render_scenes([_scene((3, 0, 0, 0))], torch.Generator().manual_seed(0))[0]
    cells = cells_of(img.unsqueeze(0))
    red = (cells[:, 0] > 0.6) & (cells[:, 1] < 0.3) & (cells[:, 2] < 0.3)
    assert red[3].sum() > 60
    assert red[:3].sum() == 0


@pytest.mark.parametrize("style", S.STYLES)
def test_styles_differ_where_they_should(style):
    gen = torch.Generator().manual_seed(0)
    img = S.render_scenes([_scene((0, 1, 4, 0), style=style)], gen)[0]
    corner = img[:, 40:, 40:]  # an empty cell: the background
    if style == "night":
        assert corner.mean() < 0.25
    elif style == "grid":
        assert corner.std() > 0.05  # lines
    else:
        assert corner.mean() > 0.85 and corner.std() < 0.05
    outline = (img[:, :32, :32].sum(0) < 0.3).sum()  # black pixels in the object's cell
    if style == "cartoon":
        assert outline > 20
    elif style != "night":
        assert outline == 0


def test_canonical_captions_name_every_object_and_style():
    rng = random.Random(0)
    for _ in range(200):
        scene = S.random_scene(rng)
        text = S.caption(scene, rng, canonical=True)
        words = text.replace(",", " ").split()
        for obj in scene.objects:
            assert obj.names["shape"] in words and obj.names["colour"] in words
        if scene.style_name != "default":
            assert S.STYLE_STEMS[scene.style_name] in text


def test_avoid_names_concepts_only_through_synonyms():
    rng = random.Random(1)
    for concept in ("star", "striped", "red", "night", "cartoon", "grid"):
        head = S.concept_head(concept)
        for _ in range(30):
            fixed = {} if head == "style" else {head: concept}
            scene = S.random_scene(rng, style=concept if head == "style" else None, fixed=fixed)
            text = S.caption(scene, rng, heldout=True, avoid=(concept,))
            if concept == "striped":
                assert "strip" not in text, text  # nor "stripes"
            else:
                assert concept not in text.replace(",", " ").split(), text


def test_partial_and_bare_captions():
    rng = random.Random(2)
    texts = [S.training_pair(rng)[0] for _ in range(2000)]
    assert any(t in ("a star", "a pentagram", "a five-pointed shape") for t in texts)
    assert any(t.startswith("something ") for t in texts)
    assert any(t in sum(S.BARE_STYLE.values(), ()) for t in texts)
    assert any(" shape" in t or " thing" in t for t in texts)
    text, scene = S.bare_caption("striped", random.Random(0), canonical=True)
    assert text == "something striped" and len(scene.objects) == 1 and scene.objects[0].names["pattern"] == "striped"
    text, scene = S.bare_caption("night", random.Random(0), canonical=True)
    assert text == "at night" and scene.style_name == "night"


def test_caption_for_only_says_what_the_scene_shows():
    rng = random.Random(3)
    for _ in range(500):
        scene = S.random_scene(rng)
        text = S.caption_for(scene, rng, omit_p=0.5, bare_p=0.3)
        words = set(text.replace(",", " ").split())
        for shape in S.SHAPES:
            if shape in words:
                assert scene.has(shape), (text, scene)
        for style in S.STYLES[1:]:
            if S.STYLE_STEMS[style] in words:
                assert scene.style_name == style


def test_templates_are_disjoint_and_vocabulary_covers_captions():
    assert not set(S.TRAIN_OBJECT_TEMPLATES) & set(S.HELDOUT_OBJECT_TEMPLATES)
    assert not set(S.TRAIN_PREFIXES) & set(S.HELDOUT_PREFIXES)
    vocab = set(S.vocabulary())
    rng = random.Random(4)
    for _ in range(500):
        scene = S.random_scene(rng)
        for heldout in (False, True):
            text = S.caption(S.describe(scene, rng, 0.3), rng, heldout=heldout)
            for token in text.replace(",", " , ").replace("-", " - ").split():
                assert token in vocab, (token, text)


def test_concepts_and_neighbours():
    assert S.concept_head("star") == "shape" and S.concept_head("night") == "style"
    with pytest.raises(UnknownConceptError, match="not a concept of the toy world"):
        S.concept_head("dog")
    with pytest.raises(UnknownConceptError):
        S.concept_head("default")
    for concept, neighbour in S.NEIGHBOURS.items():
        assert S.concept_head(concept) == S.concept_head(neighbour) and concept != neighbour


def test_scene_labels_and_judge_shapes():
    scenes = [_scene((0, 3, 1, 1), (2, 0, 4, 2), style="grid"), _scene((1, 4, 5, 0))]
    labels = S.scene_labels(scenes)
    assert labels["presence"].tolist() == [[1, 0, 1, 0], [0, 1, 0, 0]]
    assert labels["shape"].tolist() == [[3, -1, 0, -1], [-1, 4, -1, -1]]
    assert labels["style"].tolist() == [3, 0]
    torch.manual_seed(0)
    judge = SceneJudge(width=8, feature_dim=16, style_width=8).eval()
    images = S.render_scenes(scenes, torch.Generator().manual_seed(0))
    logits = judge(images)
    assert logits["shape"].shape == (2, 4, len(S.SHAPES)) and logits["style"].shape == (2, len(S.STYLES))
    loss, acc = judge_loss(logits, labels)
    assert loss.ndim == 0 and set(acc) == {"presence", "shape", "colour", "pattern", "style"}
    out = judge.predict(images)
    assert out["shape"].shape == (2, 4) and ((out["presence"] == 0) <= (out["shape"] == -1)).all()
    with pytest.raises(ValueError, match="64"):
        judge(torch.rand(1, 3, 32, 32))


def test_a_few_judge_steps_lower_its_loss():
    torch.manual_seed(0)
    judge = SceneJudge(width=8, feature_dim=16, style_width=8)
    stream = S.SceneStream(0)
    images, _, labels = stream.batch(16)
    opt = torch.optim.Adam(judge.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss, _ = judge_loss(judge(images), labels)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first * 0.8


def test_summary_dropout_replaces_only_slots_from_eos_on_in_dropped_rows():
    eos = 9
    ids = torch.tensor([[8, 1, 2, eos, eos, eos], [8, 1, eos, eos, eos, eos]])
    hidden = torch.arange(2 * 6 * 2, dtype=torch.float32).view(2, 6, 2)
    empty = torch.full((1, 6, 2), -1.0)
    out = summary_dropout(hidden, ids, eos, empty, torch.tensor([True, False]))
    assert torch.equal(out[1], hidden[1])
    assert torch.equal(out[0, :3], hidden[0, :3]) and (out[0, 3:] == -1).all()


def test_latent_cache_round_trip(tmp_path):
    from erasekit.toy.architectures import build_vae_v2

    torch.manual_seed(0)
    vae = build_vae_v2("tiny")
    a = LatentCache.build(vae, 6, seed=0, folder=tmp_path)
    b = LatentCache.build(vae, 6, seed=0, folder=tmp_path)
    assert a.latents.shape == (6, 4, 16, 16) and torch.equal(a.latents, b.latents) and a.scenes == b.scenes
    c = LatentCache.build(vae, 6, seed=1, folder=tmp_path)  # another seed: rebuilt, not reused
    assert c.scenes != a.scenes


def test_parse_caption_reads_back_what_every_caption_names():
    rng = random.Random(5)
    for i in range(1500):
        scene = S.random_scene(rng)
        desc = S.describe(scene, rng, 0.3)
        parsed = S.parse_caption(S.caption(desc, rng, heldout=i % 2 == 0))
        want = sorted(
            tuple(o.names[h] if h in n else "-" for h in S.OBJECT_HEADS) for o, n in zip(scene.objects, desc.named)
        )
        got = sorted(tuple(o[h] or "-" for h in S.OBJECT_HEADS) for o in parsed.objects)
        assert got == want
        assert parsed.style == (None if scene.style_name == "default" else scene.style_name)
    assert S.parse_caption("at night") == S.ParsedCaption((), "night", objects_named=False)
    assert S.parse_caption("something striped").objects == ({"shape": None, "colour": None, "pattern": "striped"},)


@pytest.mark.parametrize(
    "text, why",
    [
        ("a dog", "unknown words 'dog'"),
        ("a star, a circle, a heart, a box and a disc", "5 objects, 4 cells"),
        ("a star heart", "two objects"),
        ("", "names nothing"),
    ],
)
def test_parse_caption_refuses_what_the_judge_cannot_place(text, why):
    with pytest.raises(UnknownConceptError, match=why):
        S.parse_caption(text)


def test_summary_swap_takes_the_previous_rows_summary_aligned_at_its_eos():
    eos = 9
    ids = torch.tensor([[8, 1, 2, eos, eos, eos], [8, 1, eos, eos, eos, eos]])
    hidden = torch.arange(2 * 6 * 2, dtype=torch.float32).view(2, 6, 2)
    out = summary_swap(hidden, ids, eos, torch.tensor([True, True]))
    # row 0 gets row 1's slots from its EOS (position 2) on; past row 1's end the last slot repeats
    assert torch.equal(out[0, :3], hidden[0, :3]) and torch.equal(out[0, 3:], hidden[1, [2, 3, 4]])
    assert torch.equal(out[1, :2], hidden[1, :2]) and torch.equal(out[1, 2:], hidden[0, [3, 4, 5, 5]])
    kept = summary_swap(hidden, ids, eos, torch.tensor([False, True]))
    assert torch.equal(kept[0], hidden[0])


def test_same_count_donors_pick_the_nearest_earlier_scene_with_as_many_objects():
    def scene(n):
        return S.Scene(tuple(S.SceneObject(c, 0, 0, 0) for c in range(n)))

    batch = [scene(n) for n in (2, 3, 1, 1, 2)]
    donors = same_count_donors(batch)
    assert donors.tolist() == [4, 1, 3, 2, 0]  # the lone 3-object scene keeps its own summary
    eos = 9
    ids = torch.full((5, 4), eos)
    ids[:, 0] = 8
    hidden = torch.arange(5 * 4, dtype=torch.float32).view(5, 4, 1)
    out = summary_swap(hidden, ids, eos, torch.ones(5, dtype=torch.bool), donor=donors)
    assert torch.equal(out[0, 1:], hidden[4, 1:]) and torch.equal(out[1], hidden[1])
