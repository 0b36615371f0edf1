"""The toy CLIP and T5 encoder of toy world v2 (``erasekit.toy.clip``), on tiny random models: seconds."""

import math

import pytest
import torch
from transformers import CLIPTextModel
from transformers.image_utils import OPENAI_CLIP_MEAN

from erasekit.errors import ErasekitError, ModelNotFoundError
from erasekit.toy import architectures as arch
from erasekit.toy import clip as toy_clip
from erasekit.toy import scenes


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return toy_clip.build_scene_clip_tokenizer()


@pytest.fixture
def tiny(tokenizer):
    torch.manual_seed(0)
    return toy_clip.build_toy_clip(len(tokenizer), tokenizer.pad_token_id, size="tiny")


@pytest.fixture(scope="module")
def batch():
    images, captions, _ = scenes.SceneStream(3).batch(12)
    return images, captions


def test_contrastive_loss_is_symmetric_and_lower_for_matched_pairs():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(16, 8, generator=g)
    text = image + 0.3 * torch.randn(16, 8, generator=g)
    scale = torch.tensor(math.log(10.0))
    loss = toy_clip.contrastive_loss(image, text, scale)
    assert torch.allclose(loss, toy_clip.contrastive_loss(text, image, scale))
    shuffled = toy_clip.contrastive_loss(image, text[torch.randperm(16, generator=g)], scale)
    assert loss < shuffled - 1.0
    # The learned scale is capped at 100.
    capped = toy_clip.contrastive_loss(image, text, torch.tensor(math.log(1000.0)))
    assert torch.allclose(capped, toy_clip.contrastive_loss(image, text, torch.tensor(math.log(100.0))))


def test_text_tower_is_the_pipelines_text_encoder(tiny, tokenizer):
    encoder = toy_clip.clip_text_encoder(tiny)
    assert isinstance(encoder, CLIPTextModel)
    reference = arch.build_clip_text(len(tokenizer), size="tiny", pad_token_id=tokenizer.pad_token_id)
    assert encoder.config.to_dict() == reference.config.to_dict()
    assert encoder.state_dict().keys() == reference.state_dict().keys()
    ids = tokenizer(["a red star", "a cartoon of a blue dotted heart"], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        ours = encoder(ids.input_ids)
        theirs = tiny.text_model(input_ids=ids.input_ids)
    assert torch.equal(ours.last_hidden_state, theirs.last_hidden_state)
    assert torch.equal(ours.pooler_output, theirs.pooler_output)


def test_padding_to_the_longest_caption_gives_the_pipelines_embeddings(tiny, tokenizer, batch):
    _, captions = batch
    with torch.no_grad():
        short = tiny.text_model(toy_clip.clip_input_ids(tokenizer, captions)).pooler_output
        full = tiny.text_model(toy_clip.clip_input_ids(tokenizer, captions, padding="max_length")).pooler_output
    assert torch.allclose(short, full, atol=1e-5)


def test_features_are_unit_vectors_and_pixels_are_clip_normalised(tiny, tokenizer, batch):
    images, captions = batch
    with torch.no_grad():
        img = toy_clip.image_features(tiny, images)
        txt = toy_clip.text_features(tiny, tokenizer, captions)
    assert img.shape == txt.shape == (12, tiny.config.projection_dim)
    assert torch.allclose(img.norm(dim=-1), torch.ones(12), atol=1e-5)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(12), atol=1e-5)
    grey = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1).expand(2, 3, 64, 64)
    assert toy_clip.pixel_values(tiny, grey).abs().max() < 1e-6


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tiny, tokenizer, batch):
    images, captions = batch
    tiny.train()
    # At 1e-3 a tiny random CLIP first collapses onto the chance plateau (log 12): its image embeddings start
    # nearly parallel. The full-size training escapes it after warm-up.
    opt = torch.optim.AdamW(tiny.parameters(), lr=3e-4)

    def loss():
        img = toy_clip.image_features(tiny, images)
        return toy_clip.contrastive_loss(img, toy_clip.text_features(tiny, tokenizer, captions), tiny.logit_scale)

    with torch.no_grad():
        first = loss().item()
    for _ in range(25):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        assert loss().item() < first - 0.5


def test_training_is_seeded_and_saves_a_loadable_clip(tmp_path, batch):
    kwargs = dict(steps=3, batch_size=8, lr=1e-3, seed=5, device="cpu", size="tiny", warmup=1)
    clip, tokenizer, log = toy_clip.train_toy_clip(tmp_path / "a", **kwargs)
    again, _, _ = toy_clip.train_toy_clip(None, **kwargs)
    assert log["steps_done"] == 3
    for (name, p), q in zip(clip.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
    assert log["caption_lengths"]["clip_max_tokens"] <= toy_clip.CLIP_MAX_LENGTH
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"model.safetensors", "config.json", "training-clip.json", "tokenizer_config.json"} <= files
    assert {"processor_config.json", "preprocessor_config.json"} & files  # transformers 5 / 4.x
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]

    loaded, loaded_tokenizer = toy_clip.load_toy_clip(tmp_path / "a")
    images, captions = batch
    assert loaded_tokenizer(captions).input_ids == tokenizer(captions).input_ids
    with torch.no_grad():
        assert torch.equal(toy_clip.image_features(clip, images), toy_clip.image_features(loaded, images))
        assert torch.equal(
            toy_clip.text_features(clip, tokenizer, captions),
            toy_clip.text_features(loaded, loaded_tokenizer, captions),
        )
    # The text tower saved alone loads as a plain CLIPTextModel (a pipeline's text_encoder).
    toy_clip.clip_text_encoder(loaded).save_pretrained(tmp_path / "text_encoder")
    encoder = CLIPTextModel.from_pretrained(tmp_path / "text_encoder", use_safetensors=True)
    ids = tokenizer(captions, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(encoder(ids).last_hidden_state, loaded.text_model(input_ids=ids).last_hidden_state)


def test_t5_tower_trains_against_the_frozen_clip_and_round_trips(tmp_path, tiny, batch):
    vision_before = {k: v.clone() for k, v in tiny.state_dict().items()}
    t5, tokenizer, head, log = toy_clip.train_toy_t5(
        tiny, tmp_path / "t5", steps=2, batch_size=8, seed=1, device="cpu", size="tiny", warmup=1
    )
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in vision_before.items())  # the CLIP stays frozen
    assert head.proj.in_features == t5.config.d_model and head.proj.out_features == tiny.config.projection_dim
    assert tokenizer.model_max_length == toy_clip.T5_MAX_LENGTH
    assert log["caption_lengths"]["t5_max_tokens"] <= toy_clip.T5_MAX_LENGTH
    files = {p.name for p in (tmp_path / "t5").iterdir()}
    assert {"model.safetensors", "config.json", toy_clip.HEAD_FILE} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]

    t5_loaded, tokenizer_loaded, head_loaded = toy_clip.load_toy_t5(tmp_path / "t5")
    _, captions = batch
    assert tokenizer_loaded(captions).input_ids == tokenizer(captions).input_ids
    with torch.no_grad():
        ours = toy_clip.t5_features(t5, head, tokenizer, captions)
        theirs = toy_clip.t5_features(t5_loaded, head_loaded, tokenizer_loaded, captions)
    assert ours.shape == (12, tiny.config.projection_dim)
    assert torch.equal(ours, theirs)
    assert torch.equal(head.logit_scale, head_loaded.logit_scale)


def test_missing_folders_raise_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="toy CLIP"):
        toy_clip.load_toy_clip(tmp_path / "nowhere")
    with pytest.raises(ModelNotFoundError, match="toy T5"):
        toy_clip.load_toy_t5(tmp_path)


def test_captions_fit_both_tokenizers_and_overlong_ones_raise(tokenizer, monkeypatch):
    t5 = toy_clip.build_scene_t5_tokenizer()
    lengths = toy_clip.check_caption_lengths(tokenizer, t5, n=600)
    assert 20 < lengths["clip_max_tokens"] <= 77 and 20 < lengths["t5_max_tokens"] <= 48
    monkeypatch.setattr(toy_clip, "T5_MAX_LENGTH", 12)
    with pytest.raises(ErasekitError, match="t5 tokens"):
        toy_clip.check_caption_lengths(t5_tokenizer=t5, n=50)


def test_hard_negative_swaps_one_attribute_word_for_another_value_of_its_head():
    import random

    rng = random.Random(0)
    assert toy_clip.hard_negative("a red striped star", rng, head="shape").split()[:3] == ["a", "red", "striped"]
    shapes = {toy_clip.hard_negative("a red striped star", rng, head="shape").split()[-1] for _ in range(50)}
    assert "star" not in shapes and {"circle", "square", "heart"} <= shapes
    # The article follows the new word; pattern nouns swap for pattern nouns of another pattern.
    assert toy_clip.hard_negative("a red star", random.Random(1), head="colour").split()[0] in ("a", "an")
    for _ in range(20):
        colour = toy_clip.hard_negative("a red star", rng, head="colour").split()
        assert colour[0] == ("an" if colour[1][0] in "aeiou" else "a") and colour[1] not in ("red", "crimson")
        assert toy_clip.hard_negative("a star with stripes", rng, head="pattern").split()[-1] in ("dots", "spots")
    assert toy_clip.hard_negative("a red round shape", rng, head="shape").split()[2] != "round"
    assert toy_clip.hard_negative("at night", rng) is None and toy_clip.hard_negative("", rng) is None


def test_negatives_enter_only_the_image_to_text_side():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(8, 6, generator=g)
    text = image + 0.3 * torch.randn(8, 6, generator=g)
    scale = torch.tensor(math.log(10.0))
    none = toy_clip.contrastive_loss_with_negatives(image, text, torch.zeros(0, 6), scale)
    assert torch.allclose(none, toy_clip.contrastive_loss(image, text, scale))
    # A negative equal to image 0's caption makes image 0's choice a coin toss: the loss rises.
    assert toy_clip.contrastive_loss_with_negatives(image, text, text[:1], scale) > none + 0.02


def test_swap_accuracy_reads_each_head(tiny, tokenizer, batch):
    images, captions = batch
    tiny.eval()
    acc = toy_clip.swap_accuracy(tiny, tokenizer, images, captions)
    assert set(acc) <= {"shape", "colour", "pattern"} and "shape" in acc
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    # A text tower blind to words scores every caption alike: a tie is no success.
    with torch.no_grad():
        tiny.text_projection.weight.zero_()
    assert all(v == 0.0 for v in toy_clip.swap_accuracy(tiny, tokenizer, images, captions).values())


def test_lone_phrases_pair_each_attribute_word_with_its_slot_in_the_phrase_alone(tokenizer):
    captions = ["a red star and a blue striped circle", "pixel art"]
    phrases, pairs = toy_clip.lone_phrases(captions)
    assert phrases == ["a red star", "a blue striped circle"]
    ids = tokenizer(captions).input_ids
    lone = tokenizer(phrases).input_ids
    assert [(i, j) for i, _, j, _ in pairs] == [(0, 0)] * 2 + [(0, 1)] * 3
    for i, t, j, k in pairs:
        assert ids[i][t] == lone[j][k]  # the same word, at its slot in each encoding


def test_phrase_locality_is_zero_only_where_a_phrase_carries_nothing_of_the_others(tiny, tokenizer):
    captions = ["a red star and a blue striped circle", "a green heart beside a yellow square"]
    with torch.no_grad():
        cos = toy_clip.phrase_cosines(tiny, tokenizer, captions)
        # The text tower is causal: a caption's first phrase, at its start, is encoded as when alone.
        assert cos["phrase_cos_1"] == pytest.approx(1.0, abs=1e-5)
        assert cos["phrase_cos_2"] < 0.999
        phrases, pairs = toy_clip.lone_phrases(captions)
        states = tiny.text_model(input_ids=toy_clip.clip_input_ids(tokenizer, captions)).last_hidden_state
        lone = tiny.text_model(input_ids=toy_clip.clip_input_ids(tokenizer, phrases)).last_hidden_state
        loss = toy_clip.phrase_locality_loss(states, lone, pairs)
        assert float(loss) == pytest.approx(1 - (4 * 1.0 + 5 * cos["phrase_cos_2"]) / 9, abs=1e-5)  # 4 + 5 words
        # A margin m leaves the pairs at least that close alone: the loss is the mean of max(0, m − cosine).
        index = torch.tensor(pairs)
        each = torch.nn.functional.cosine_similarity(
            states[index[:, 0], index[:, 1]], lone[index[:, 2], index[:, 3]], dim=-1
        )
        m = float(each.median())
        hinge = toy_clip.phrase_locality_loss(states, lone, pairs, margin=m)
        assert float(hinge) == pytest.approx(float((m - each).clamp(min=0).mean()), abs=1e-6)
        assert 0 < float(hinge) < float(loss)
        copied = states.clone()
        for i, t, j, k in pairs:
            copied[i, t] = lone[j, k]
        assert float(toy_clip.phrase_locality_loss(copied, lone, pairs)) == pytest.approx(0.0, abs=1e-6)
        decoder = torch.nn.Linear(states.shape[-1], len(tokenizer))
        ids = toy_clip.clip_input_ids(tokenizer, captions)
        assert float(toy_clip.word_decoding_loss(states, ids, decoder, tokenizer)) > 0


def test_training_with_phrase_locality_moves_the_second_phrase_toward_its_lone_encoding(tmp_path):
    kwargs = dict(batch_size=16, lr=3e-3, seed=5, device="cpu", size="tiny", warmup=1, eval_every=30)
    _, _, log = toy_clip.train_toy_clip(None, steps=30, phrase_locality=5.0, word_locality=5.0, **kwargs)
    first, last = log["eval"][0], log["final_eval"]
    assert log["config"]["extra"]["phrase_locality"] == log["config"]["extra"]["word_locality"] == 5.0
    assert last["phrase_cos_2"] > first["phrase_cos_2"] + 0.05, (first, last)
    assert last["word_cos_1"] > first["word_cos_1"] + 0.05, (first, last)


def test_lone_attributes_pair_each_word_with_its_attribute_encoded_bare(tokenizer):
    captions = ["a red star with stripes beside a round shape"]
    texts, pairs = toy_clip.lone_attributes(captions)
    assert sorted(texts) == ["red", "round shape", "star", "with stripes"]
    ids, lone = tokenizer(captions).input_ids, tokenizer(texts).input_ids
    assert len(pairs) == 6
    for i, t, j, k in pairs:
        assert ids[i][t] == lone[j][k]


def test_phrase_readout_labels_each_word_with_what_its_phrase_has_named_so_far(tokenizer):
    captions = ["a red striped star and a blue circle with dots", "a star in red"]
    slots, labels = toy_clip.phrase_readout_targets(captions)
    ids = tokenizer(captions).input_ids
    words = [tokenizer.decode([ids[i][t]]).strip() for i, t in slots]
    assert words == ["red", "striped", "star", "blue", "circle", "with", "dots", "star", "red"]
    shape, colour, pattern = (scenes.OBJECT_HEADS[h] for h in toy_clip.READOUT_HEADS)
    star, red, striped = 1 + shape.index("star"), 1 + colour.index("red"), 1 + pattern.index("striped")
    assert labels[0].tolist() == [0, red, 0]  # "red" knows only itself
    assert labels[2].tolist() == [star, red, striped]  # the noun after its adjectives knows the phrase
    assert labels[5].tolist() == labels[4].tolist()  # "with" of "with dots" names nothing yet
    assert labels[6, 2] == 1 + pattern.index("dotted")
    assert labels[7].tolist() == [star, 0, 0] and labels[8].tolist() == [star, red, 0]


def test_phrase_readout_loss_falls_as_the_readout_fits_and_training_records_it(tiny, tokenizer):
    captions = ["a red striped star and a blue circle with dots", "a green square beside a yellow star"]
    with torch.no_grad():
        states = tiny.text_model(input_ids=toy_clip.clip_input_ids(tokenizer, captions)).last_hidden_state
    slots, labels = toy_clip.phrase_readout_targets(captions)
    torch.manual_seed(0)
    readout = torch.nn.ModuleList(
        torch.nn.Linear(states.shape[-1], 1 + len(scenes.OBJECT_HEADS[h])) for h in toy_clip.READOUT_HEADS
    )
    opt = torch.optim.Adam(readout.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = toy_clip.phrase_readout_loss(states, slots, labels, readout)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert float(toy_clip.phrase_readout_loss(states, [], labels[:0], readout)) == 0.0
    kwargs = dict(batch_size=8, lr=3e-3, seed=5, device="cpu", size="tiny", warmup=1)
    _, _, log = toy_clip.train_toy_clip(
        None, steps=2, word_locality=1.0, word_margin=0.85, phrase_readout=2.0, **kwargs
    )
    assert log["config"]["extra"]["phrase_readout"] == 2.0 and log["final"]["readout"] > 0


def test_t5_slots_line_up_with_the_words_at_offset_zero():
    tokenizer = toy_clip.build_scene_t5_tokenizer()
    captions = ["a red star with stripes, a blue circle"]
    ids = tokenizer(captions).input_ids
    for lone_fn in (toy_clip.lone_phrases, toy_clip.lone_attributes):
        texts, pairs = lone_fn(captions, offset=0)
        lone = tokenizer(texts).input_ids
        assert pairs and all(ids[i][t] == lone[j][k] for i, t, j, k in pairs)
    slots, labels = toy_clip.phrase_readout_targets(captions, offset=0, causal=False)
    assert [tokenizer.decode([ids[0][t]]) for _, t in slots] == ["red", "star", "with", "stripes", "blue", "circle"]
    assert len({tuple(r) for r in labels[:4].tolist()}) == 1  # a bidirectional word knows its whole phrase
