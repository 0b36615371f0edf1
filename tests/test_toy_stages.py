"""The v2 training stages: each in order into one folder, refusing a missing prerequisite or a finished stage,
and the denoisers assembled into pipelines that load as world-v2 toy models."""

import json
import shutil

import pytest

from erasekit.errors import InvalidArgumentError, ModelNotFoundError
from erasekit.models import load, toy_world_version
from erasekit.outputs import OutputError
from erasekit.toy.stages import STAGES, WORK_DIR, stage_status, train_stage


def test_stages_chain_into_v2_pipelines(tmp_path):
    out = tmp_path / "world"
    with pytest.raises(ModelNotFoundError, match="needs vae, clip, t5"):
        train_stage("flux", out)
    with pytest.raises(InvalidArgumentError, match="takes no extra settings"):
        train_stage("judge", out, settings={"summary_dropout": 0.5})
    assert set(stage_status(out).values()) == {"not started"}
    with pytest.raises(InvalidArgumentError, match="takes no extra settings"):
        train_stage("clip", out, settings={"summary_dropout": 0.5})
    for stage in ("judge", "vae", "clip", "t5"):
        settings = {"phrase_locality": 1.0, "word_locality": 1.0, "word_margin": 0.9} if stage == "clip" else None
        settings = {"phrase_readout": 1.0, "word_locality": 1.0} if stage == "t5" else settings
        train_stage(stage, out, steps=1, batch_size=4, settings=settings)
    logged = json.loads((out / "t5" / "training-t5.json").read_text())
    assert logged["config"]["extra"]["phrase_readout"] == 1.0 and {"readout", "word_locality"} <= set(logged["final"])
    with pytest.raises(InvalidArgumentError, match="settings of clip"):
        train_stage("sd", out, name="sd-x", settings={"phrase_locality": 1.0})
    with pytest.raises(InvalidArgumentError, match="settings of sd"):
        train_stage("flux", out, settings={"attention_grounding": 0.1})
    for stage in ("sd", "flux"):
        settings = {"summary_dropout": 0.5, "summary_swap": 0.5, "summary_swap_same_count": True}
        if stage == "sd":
            settings |= {"attention_grounding": 0.1, "attention_binding": 0.1}
        train_stage(stage, out, steps=2, batch_size=2, cache_size=4, settings=settings)
    logged = json.loads((out / "toy-sd" / "training-sd.json").read_text())
    assert logged["config"]["extra"]["attention_grounding"] == 0.1 and {"grounding", "binding"} <= set(logged["final"])
    assert set(stage_status(out).values()) == {"done"} and list(stage_status(out)) == list(STAGES)
    assert (out / WORK_DIR / "cache" / "cache.json").is_file()
    for name in ("toy-sd", "toy-flux"):
        assert toy_world_version(out / name) == 2
        assert load(out / name).is_toy
    with pytest.raises(OutputError, match="exists"):
        train_stage("judge", out, steps=1)
    _continues_from_a_trained_denoiser(out)
    _continues_from_a_trained_clip(out)


def _continues_from_a_trained_clip(out):
    import torch

    from erasekit.toy.clip import load_toy_clip, save_toy_clip

    with pytest.raises(InvalidArgumentError, match="has none"):
        train_stage("vae", out, name="vae-2", init_from=out / "vae")
    with pytest.raises(ModelNotFoundError, match="no toy T5 encoder"):
        train_stage("t5", out, name="t5-2", init_from=out / "clip")
    from erasekit.toy.clip import load_toy_t5

    train_stage("t5", out, name="t5-2", steps=1, batch_size=4, lr=1e-8, init_from=out / "t5")
    t5_before, t5_after = load_toy_t5(out / "t5")[0].state_dict(), load_toy_t5(out / "t5-2")[0].state_dict()
    assert max(float((t5_after[k] - t5_before[k]).abs().max()) for k in t5_before) < 1e-5
    with pytest.raises(ModelNotFoundError, match="not the world-v2 toy CLIP"):
        train_stage("clip", out, name="clip-2", init_from=out / "vae")
    clip, tokenizer = load_toy_clip(out / "clip")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in clip.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    save_toy_clip(clip, tokenizer, out / "clip-perturbed")
    train_stage("clip", out, name="clip-2", steps=1, batch_size=4, lr=1e-8, init_from=out / "clip-perturbed")
    after = load_toy_clip(out / "clip-2")[0].state_dict()
    before = clip.state_dict()
    assert max(float((after[k] - before[k]).abs().max()) for k in before) < 1e-5


def _continues_from_a_trained_denoiser(out):
    """--init-from starts the run from the given pipeline's denoiser, not a fresh one (lr ≈ 0: the weights stay)."""
    import torch
    from diffusers import UNet2DConditionModel

    with pytest.raises(InvalidArgumentError, match="has none"):
        train_stage("vae", out, name="vae-2", init_from=out / "toy-sd")
    with pytest.raises(InvalidArgumentError, match="flux has none"):
        train_stage("flux", out, name="flux-2", settings={"x0_weight_floor": 0.2})
    with pytest.raises(ModelNotFoundError, match="no unet/"):
        train_stage("sd", out, name="sd-2", init_from=out / "toy-flux")
    # Shift the trained weights far from anything a fresh build (or a 1-step run) could give, so a run that
    # ignored --init-from cannot land on them.
    unet = UNet2DConditionModel.from_pretrained(out / "toy-sd" / "unet")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    unet.save_pretrained(out / "toy-sd" / "unet")
    before = unet.state_dict()
    train_stage("sd", out, name="sd-2", steps=1, batch_size=2, cache_size=4, lr=1e-8, init_from=out / "toy-sd")
    after = UNet2DConditionModel.from_pretrained(out / "sd-2" / "unet").state_dict()
    assert max(float((after[k] - before[k]).abs().max()) for k in before) < 1e-5
    with pytest.raises(InvalidArgumentError, match="at most 1"):
        train_stage("sd", out, name="sd-3", settings={"summary_dropout": 0.6, "summary_swap": 0.6})
    # Regrouping the heads keeps every weight; only the split of the projections changes.
    with pytest.raises(InvalidArgumentError, match="5 attention heads do not divide"):
        train_stage("sd", out, name="sd-3", settings={"attention_heads": 5})
    with pytest.raises(InvalidArgumentError, match="flux's heads are fixed"):
        train_stage("flux", out, name="flux-3", settings={"attention_heads": 2})
    train_stage(
        "sd",
        out,
        name="sd-3",
        steps=1,
        batch_size=2,
        cache_size=4,
        lr=1e-8,
        init_from=out / "toy-sd",
        settings={"attention_heads": 2},
    )
    regrouped = UNet2DConditionModel.from_pretrained(out / "sd-3" / "unet")
    assert regrouped.config.attention_head_dim == 2
    assert regrouped.down_blocks[0].attentions[0].transformer_blocks[0].attn2.heads == 2
    after = regrouped.state_dict()
    assert max(float((after[k] - before[k]).abs().max()) for k in before) < 1e-5


def test_world_v1_prerequisites_are_refused(tmp_path):
    from erasekit.models import toy_weights_dir

    out = tmp_path / "w"
    out.mkdir()
    (out / "vae").symlink_to(toy_weights_dir() / "toy-sd" / "vae")  # world v1's 32-px autoencoder
    (out / "clip").symlink_to(toy_weights_dir() / "toy-sd" / "text_encoder")
    with pytest.raises(ModelNotFoundError, match="not a world-v2 autoencoder"):
        train_stage("sd", out, steps=1)
    (out / "vae").unlink()
    shutil.copytree(_tiny_v2_vae(tmp_path), out / "vae")
    with pytest.raises(ModelNotFoundError, match="not the world-v2 toy CLIP"):
        train_stage("sd", out, steps=1)


def _tiny_v2_vae(tmp_path):
    from erasekit.toy.architectures import build_vae_v2

    folder = tmp_path / "tiny-vae"
    build_vae_v2("tiny").save_pretrained(folder)
    return folder
