"""P4D: tokens learned so that the edited model's prediction matches the unedited one's; P4D-N replaces the
prompt, P4D-K interleaves learned words every K words; the prompt avoids the concept and is plain text."""

import pytest
import torch

from erasekit.eval.attacks import word_vocabulary
from erasekit.eval.attacks.p4d import P4DConfig, _layout, p4d_attack, p4d_prompt
from erasekit.models import from_pipeline
from erasekit.toy.pipelines import tiny_sd_pipeline


@pytest.fixture
def edited_and_reference():
    reference = from_pipeline(tiny_sd_pipeline(seed=0), name="tiny-sd")
    edited = from_pipeline(tiny_sd_pipeline(seed=0), name="tiny-sd")
    with torch.no_grad():  # an "erasure": the edited UNet's cross-attention values moved
        for name, p in edited.denoiser.named_parameters():
            if "attn2.to_v" in name:
                p.add_(0.3 * torch.randn_like(p))
    return edited, reference


def test_p4d_n_lowers_the_loss_and_avoids_the_concept(edited_and_reference):
    edited, reference = edited_and_reference
    vocab = word_vocabulary(edited.tokenizer, forbid=["star"])
    target = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    weights = {k: v.clone() for k, v in edited.denoiser.state_dict().items()}
    _, start = p4d_prompt(edited, reference, "a red star", target, P4DConfig(n_tokens=4, steps=0), vocab)
    prompt, loss = p4d_prompt(
        edited, reference, "a red star", target, P4DConfig(n_tokens=4, steps=40, eval_every=5, lr=0.1), vocab
    )
    assert loss < start
    assert len(prompt.split()) == 4 and "star" not in prompt.split()
    assert all(torch.equal(v, weights[k]) for k, v in edited.denoiser.state_dict().items())
    assert not edited.pipeline.text_encoder.get_input_embeddings()._forward_hooks


def test_p4d_k_keeps_the_prompt_and_learns_every_k_words(edited_and_reference):
    edited, _ = edited_and_reference
    pieces, positions = _layout(edited, "a red striped star", P4DConfig(variant="k", every_k=3))
    assert pieces == [None, "a", "red", "striped", None, "star"]
    assert positions == [1, 5]
    pieces, _ = _layout(edited, "a red star", P4DConfig(variant="k", every_k=3))
    assert pieces == [None, "a", "red", "star", None]  # floor(3 / 3) + 1 learned tokens


def test_p4d_attack_end_to_end(edited_and_reference):
    edited, reference = edited_and_reference

    class Bright:
        name = "bright"

        def presence(self, images, targets):
            score = images.float().mean(dim=(1, 2, 3))
            return score, score > 0.5

    targets = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    config = P4DConfig(variant="k", every_k=2, steps=3, eval_every=1)
    result = p4d_attack(
        edited,
        reference,
        ["a red star", "a blue star"],
        [0, 1],
        targets,
        Bright(),
        "star",
        config,
        progress=False,
        num_inference_steps=2,
    )
    assert result.attack == "p4d-k" and len(result.prompts) == 2
    for source, prompt in zip(result.source_prompts, result.prompts):
        kept = [w for w in prompt.split() if w in source.split()]
        assert kept == source.split()  # the prompt's own words, in order
    with pytest.raises(ValueError, match="variant"):
        P4DConfig(variant="x")


def test_p4d_follows_a_negative_prompt_and_refuses_gie(edited_and_reference):
    from erasekit.errors import InvalidEditError
    from erasekit.eval.attacks.white_box import inference_controls
    from erasekit.pipeline_state import editing_state

    edited, reference = edited_and_reference
    with editing_state(edited.pipeline) as state:
        state.set_call_kwargs(negative_prompt="star")
    assert inference_controls(edited) == {"negative_prompt": "star"}
    vocab = word_vocabulary(edited.tokenizer, forbid=["star"])
    target = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    p4d_prompt(edited, reference, "a red star", target, P4DConfig(n_tokens=2, steps=1), vocab)
    with pytest.raises(InvalidEditError, match="GIE"):
        p4d_prompt(
            edited,
            reference,
            "a red star",
            target,
            P4DConfig(n_tokens=2, steps=1),
            vocab,
            controls={"unsupported": "GIE"},
        )
