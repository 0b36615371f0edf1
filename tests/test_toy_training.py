"""The toy trainer runs end to end (a few steps each), is seeded, and writes loadable diffusers folders."""

import torch
from diffusers import FluxPipeline, StableDiffusionPipeline

from erasekit.api import is_toy
from erasekit.models import load
from erasekit.toy.classifier import ToyClassifier
from erasekit.toy.train import TrainConfig, train_classifier, train_flux, train_sd, train_vae


def _cfg(**kw):
    return TrainConfig(steps=2, batch_size=4, warmup=1, device="cpu", caption_dropout=0.5, **kw)


def test_classifier_training_is_seeded(tmp_path):
    a = train_classifier(tmp_path / "a", _cfg())
    b = train_classifier(tmp_path / "b", _cfg())
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(pa, pb)
    reloaded = ToyClassifier.from_pretrained(tmp_path / "a")
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(reloaded(images)["shape"], a(images)["shape"])
    assert (tmp_path / "a" / "training-classifier.json").exists()


def test_vae_sd_and_flux_training_write_pipelines(tmp_path):
    vae = train_vae(tmp_path / "vae", _cfg())
    assert vae.config.scaling_factor > 0
    train_sd(vae, tmp_path / "sd", _cfg())
    train_flux(vae, tmp_path / "flux", _cfg())
    sd = StableDiffusionPipeline.from_pretrained(tmp_path / "sd", local_files_only=True)
    image = sd("a red star", num_inference_steps=2, output_type="pt").images
    assert image.shape == (1, 3, 32, 32)
    # Trained into any folder, a toy pipeline is marked as one: toy prompts, judge and suite apply to it, and it
    # generates with the shipped toy models' defaults.
    for name, shipped in (("sd", "toy-sd"), ("flux", "toy-flux")):
        assert is_toy(tmp_path / name)
        assert load(tmp_path / name).defaults == load(shipped).defaults
    marker = tmp_path / "sd" / "erasekit.json"
    marker.write_text('{"toy_world": false, "num_inference_steps": 25}')
    assert not is_toy(tmp_path / "sd")
    marker.write_text("not json")
    assert not is_toy(tmp_path / "sd")
    marker.unlink()
    assert not is_toy(tmp_path / "sd") and not is_toy("CompVis/stable-diffusion-v1-4")
    flux = FluxPipeline.from_pretrained(tmp_path / "flux", local_files_only=True)
    image = flux(
        "a red star", num_inference_steps=2, height=32, width=32, max_sequence_length=32, output_type="pt"
    ).images
    assert image.shape == (1, 3, 32, 32)
