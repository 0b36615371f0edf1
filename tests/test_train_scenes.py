"""The v2 denoiser trainers: a couple of steps against frozen encoders, saved as loadable pipelines."""

import json

import torch
from diffusers import DiffusionPipeline

from erasekit.toy import architectures as arch
from erasekit.toy.scenes import vocabulary
from erasekit.toy.tokenizers import build_clip_tokenizer, build_t5_tokenizer
from erasekit.toy.train_scenes import LatentCache, default_config, loss_weight, train_flux, train_sd


def _parts():
    torch.manual_seed(0)
    vae = arch.build_vae_v2("tiny")
    tokenizer = build_clip_tokenizer(vocabulary())
    text = arch.build_clip_text(len(tokenizer), pad_token_id=tokenizer.pad_token_id)  # the toy width the denoisers read
    return vae, tokenizer, text, LatentCache.build(vae, 8, seed=0)


def test_train_sd_keeps_the_text_encoder_frozen_and_saves_a_v2_pipeline(tmp_path):
    vae, tokenizer, text, cache = _parts()
    before = {k: v.clone() for k, v in text.state_dict().items()}
    cfg = default_config("sd", steps=2, batch_size=2, warmup=1, extra={"summary_dropout": 0.5})
    train_sd(vae, text, tokenizer, cache, tmp_path / "sd", cfg)
    assert all(torch.equal(before[k], v) for k, v in text.state_dict().items())
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "sd")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    defaults = json.loads((tmp_path / "sd" / "erasekit.json").read_text())
    assert defaults["toy_world_version"] == 2 and defaults["height"] == 64
    log = json.loads((tmp_path / "sd" / "training-sd.json").read_text())
    assert log["steps_done"] == 2 and log["config"]["extra"]["summary_dropout"] == 0.5


def test_train_flux_saves_the_wide_ffn_transformer(tmp_path):
    vae, tokenizer, text, cache = _parts()
    tokenizer_2 = build_t5_tokenizer(vocabulary(), max_length=48)
    t5 = arch.build_t5(len(tokenizer_2))
    cfg = default_config("flux", steps=2, batch_size=2, warmup=1)
    train_flux(vae, text, tokenizer, t5, tokenizer_2, cache, tmp_path / "flux", cfg)
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "flux")
    assert type(pipe.transformer).__name__ == "ToyFluxTransformer2DModel"
    assert pipe.transformer.single_transformer_blocks[0].proj_mlp.out_features == 16 * 96


def test_loss_weight_is_min_snr_and_its_floor_lifts_only_the_noisiest_steps():
    sched = arch.ddpm_training_scheduler("epsilon")
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    for kind, scale in (("epsilon", snr), ("v_prediction", snr + 1)):
        plain = loss_weight(snr, kind)
        # In clean-latent terms (the ε loss is SNR·‖Δx₀‖², the v loss (SNR + 1)·‖Δx₀‖²): min(SNR, 5).
        assert torch.allclose(plain * scale, snr.clamp(max=5))
        lifted = loss_weight(snr, kind, floor=0.2)
        assert torch.allclose((lifted * scale)[snr >= 0.2], snr.clamp(max=5)[snr >= 0.2])
        assert torch.allclose((lifted * scale)[snr < 0.2], torch.full_like(snr[snr < 0.2], 0.2))
        assert bool((snr < 0.2).any()) and bool((lifted >= plain).all())
