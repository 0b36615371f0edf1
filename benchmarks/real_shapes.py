"""Every registered method on the real model shapes, on the CPU, with random weights (issue item 8).

Not run in CI and not a test: it checks that each method's erase and an edited generation run end to end on the
exact component configs of ``CompVis/stable-diffusion-v1-4`` and ``black-forest-labs/FLUX.1-schnell`` (FLUX: real
widths, but 1 double-stream and 1 single-stream block, text encoders 1 layer deep), without any download, and
prints how long each took and the peak memory.

    OMP_NUM_THREADS=2 python benchmarks/real_shapes.py                  # everything (tens of minutes)
    OMP_NUM_THREADS=2 python benchmarks/real_shapes.py --family flux --methods mce,negprompt

* The components are built from their hub configs (copied here) with random weights, in fp32, and assembled into
  real diffusers pipelines; the tokenizers are built in code the way ``erasekit.toy.tokenizers`` does, padded with
  filler tokens to the real vocabulary sizes (CLIP 49408, T5 32128), so the embedding tables have their real shape.
* Each (method, family) runs in a child process of its own, on a freshly built backbone, so memory is freed between
  runs, the peak RSS is the run's own (``ru_maxrss`` of the child, building included), and a run killed for memory
  does not end the others. Only one model is in memory at a time.
* Erase: ``erasekit.api.erase(backbone, method, "nudity", settings=..., preserve=["a person"])`` with two
  optimisation steps (``SETTINGS``). Generation: the edit applied with ``erasekit.methods.apply_edit`` — to the
  erased backbone for mask and inference-control edits, to a freshly built base model (same seed, same weights) for
  weight deltas, which the fine-tuning already wrote into the erased one — then ``generate(backbone, ["a photo"],
  [0], num_inference_steps=2)`` at the backbone's default size: 512 px for SD (the UNet's sample size), 256 px for
  FLUX (``--flux-size``; FLUX's own default, the VAE's 1024, would be 16× the tokens). Erase runs at that size too.
* GIE runs twice: with a fixed ``scale=-4`` (no adapter: the edit is the settings) and with its adapter fitted on
  two prompts and a fixed two-scale grid, labelled by a random tiny CLIP judge built here (there are no real CLIP
  weights offline, so its labels are noise: this checks the plumbing and the cost, not the result).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ERASEKIT_PROGRESS", "0")

SD_REPO = "CompVis/stable-diffusion-v1-4"
FLUX_REPO = "black-forest-labs/FLUX.1-schnell"
CLIP_VOCAB, T5_VOCAB = 49408, 32128

# ------------------------------------------------------------------------------------------------ configs
# Copied from the hub repositories' config.json files (keys at their defaults left out).

SD_UNET = dict(
    act_fn="silu",
    attention_head_dim=8,
    block_out_channels=(320, 640, 1280, 1280),
    center_input_sample=False,
    cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    out_channels=4,
    sample_size=64,
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
_VAE = dict(
    act_fn="silu",
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    norm_num_groups=32,
)
SD_VAE = _VAE | dict(latent_channels=4, sample_size=512, scaling_factor=0.18215)
FLUX_VAE = _VAE | dict(
    latent_channels=16,
    sample_size=1024,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
    force_upcast=True,
    mid_block_add_attention=True,
)
# openai/clip-vit-large-patch14's text tower (SD 1.4's text_encoder, FLUX's text_encoder): ViT-L/14.
CLIP_L = dict(
    vocab_size=CLIP_VOCAB,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    bos_token_id=0,
    eos_token_id=2,  # as in the hub config: transformers then pools at the highest id, <|endoftext|>
    pad_token_id=1,
)
# google/t5-v1_1-xxl's encoder (FLUX's text_encoder_2), 24 layers there.
T5_XXL = dict(
    vocab_size=T5_VOCAB,
    d_model=4096,
    d_ff=10240,
    d_kv=64,
    num_heads=64,
    num_layers=24,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu_new",
    is_gated_act=True,
    layer_norm_epsilon=1e-6,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)
FLUX_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=False,
    axes_dims_rope=(16, 56, 56),
)
SD_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    clip_sample=False,
)
FLUX_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=False,
    base_image_seq_len=256,
    base_shift=0.5,
    max_image_seq_len=4096,
    max_shift=1.15,
)

# ----------------------------------------------------------------------------------------------- settings
# Two optimisation steps each, and the least sampling the methods allow.

FINE_TUNING = {"steps": 2, "batch_size": 1}
SETTINGS: dict[str, dict] = {
    "abo": FINE_TUNING | {"trajectories": 2, "sample_steps": 2},
    "erasediff": FINE_TUNING | {"num_forget": 2, "num_remain": 2, "generation_steps": 2},
    "esd-u": FINE_TUNING | {"sample_steps": 2},
    "esd-x": FINE_TUNING | {"sample_steps": 2},
    "gie": {"scale": -4.0},
    "gie-adapter": {
        "train_prompts": 2,
        "scale_grid": [-1.0, -4.0],
        "epochs": 20,
        "hidden": [8],
        "num_inference_steps": 2,
        "judge": "clip",
    },
    # Gates start at λ = 0.1, not 3: two steps of lr 0.5 cannot close a gate from 3, and erase refuses a mask set
    # that switches nothing off (NoOpEditError).
    "mce": {"sampler_steps": 2, "steps": 2, "batch_size": 2, "init_logit": 0.1},
    "negprompt": {},
    # Guidance from the first step: the presets' warm-up (10 steps for "medium") outlasts a 2-step generation.
    "sld": {"sld_warmup_steps": 0},
    "uce": {},
}
CASE_METHOD = {"gie-adapter": "gie"}  # cases that are another setting of a registered method
# Generation settings beyond the defaults. negprompt on FLUX needs true classifier-free guidance (its docstring):
# FLUX.1-schnell's default guidance 1 refuses a negative prompt, so it generates with true CFG at 2.
GENERATE: dict[tuple[str, str], dict] = {("negprompt", "flux"): {"guidance_scale": 2.0}}


# ------------------------------------------------------------------------------------------------ tokenizers


def _words() -> list[str]:
    from erasekit.toy.world import vocabulary

    extra = "a an the of photo person people nudity nude naked body picture image portrait thing with and in on"
    return sorted({w for w in list(vocabulary()) + extra.split() if w.isalpha() and w.islower()})


def clip_tokenizer():
    """CLIP's byte-level BPE with every word of ``_words`` one token, padded to CLIP's 49408 ids with filler
    tokens (never produced), ``<|startoftext|>`` 49406 and ``<|endoftext|>`` 49407 as in the real tokenizer."""
    from transformers import CLIPTokenizer

    from erasekit.toy.tokenizers import MODEL_MAX_LENGTH, build_clip_bpe

    vocab, merges = build_clip_bpe(_words())
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    tokens = [t for t in sorted(vocab, key=vocab.get) if t not in (bos, eos)]
    tokens += [f"<|filler{i}|>" for i in range(CLIP_VOCAB - 2 - len(tokens))] + [bos, eos]
    tokenizer = CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=merges,
        model_max_length=MODEL_MAX_LENGTH,
        bos_token=bos,
        eos_token=eos,
        unk_token=eos,
        pad_token=eos,
    )
    assert len(tokenizer) == CLIP_VOCAB and tokenizer.eos_token_id == CLIP_VOCAB - 1, len(tokenizer)
    return tokenizer


def t5_tokenizer():
    """A Unigram T5 tokenizer (the words of ``_words`` as pieces, single characters as the fallback) padded with
    filler pieces to T5's 32128 ids; FLUX.1-schnell's ``model_max_length`` (512)."""
    from erasekit.toy.tokenizers import build_t5_tokenizer

    tokenizer = build_t5_tokenizer(_words(), size=T5_VOCAB, max_length=512)
    assert len(tokenizer) == T5_VOCAB, len(tokenizer)
    return tokenizer


# ------------------------------------------------------------------------------------------------ pipelines


def build_sd(seed: int = 0):
    """``CompVis/stable-diffusion-v1-4`` with random weights: its UNet, CLIP ViT-L/14 text encoder, VAE, PNDM."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD_VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
        tokenizer=clip_tokenizer(),
        unet=UNet2DConditionModel(**SD_UNET),
        scheduler=PNDMScheduler.from_config(SD_SCHEDULER),  # as from the hub: unknown keys (clip_sample) dropped
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _eval(pipe)


def build_flux(seed: int = 0, double: int = 1, single: int = 1, text_layers: int = 1):
    """``black-forest-labs/FLUX.1-schnell`` with random weights at its real widths, but ``double`` + ``single``
    transformer blocks (19 + 38 there) and ``text_layers``-deep CLIP-L and T5-XXL encoders (12 and 24 there)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
        vae=AutoencoderKL(**FLUX_VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**(CLIP_L | {"num_hidden_layers": text_layers}))),
        tokenizer=clip_tokenizer(),
        text_encoder_2=T5EncoderModel(T5Config(**(T5_XXL | {"num_layers": text_layers}))),
        tokenizer_2=t5_tokenizer(),
        transformer=FluxTransformer2DModel(**(FLUX_TRANSFORMER | {"num_layers": double, "num_single_layers": single})),
    )
    return _eval(pipe)


def _eval(pipe):
    import torch

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def backbone_for(family: str, args):
    from erasekit.models import from_pipeline

    pipe = build_sd() if family == "sd" else build_flux()
    name = f"random:{SD_REPO if family == 'sd' else FLUX_REPO}"
    backbone = from_pipeline(pipe, name=name)
    size = args.sd_size if family == "sd" else args.flux_size
    if size:
        backbone = from_pipeline(
            pipe, name=name, defaults=dataclasses.replace(backbone.defaults, height=size, width=size)
        )
    return backbone


def tiny_clip_folder(folder: Path) -> Path:
    """A random 2-layer CLIP (32-px images) saved like a hub folder, for GIE's ``judge="clip"``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from erasekit.toy.tokenizers import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    text = layers | dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = CLIPConfig(text_config=text, vision_config=layers | dict(image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- runs


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_case(family: str, case: str, args) -> dict:
    """Build, erase, apply, generate; the timings and what went wrong, if anything."""
    import torch

    import erasekit.api as ek
    from erasekit.generate import generate
    from erasekit.methods import apply_edit

    row = {"method": case, "family": family, "build_s": None, "erase_s": None, "generate_s": None}
    stage, t = "build", time.perf_counter()
    try:
        backbone = backbone_for(family, args)
        row["build_s"] = time.perf_counter() - t
        row["size"] = backbone.defaults.height
        settings = dict(SETTINGS.get(case, {})) | args.overrides
        with tempfile.TemporaryDirectory() as tmp:
            if settings.get("judge") == "clip":
                settings["judge_path"] = str(tiny_clip_folder(Path(tmp) / "tiny-clip"))
            stage = "erase"
            t = time.perf_counter()
            edit = ek.erase(
                backbone, CASE_METHOD.get(case, case), "nudity", settings=settings, preserve=["a person"], seed=0
            )
            row["erase_s"] = time.perf_counter() - t
        stage = "apply"
        if edit.kind == "weight_delta":  # already in the erased weights: apply it to the base model, as a user would
            del backbone
            gc.collect()
            backbone = backbone_for(family, args)
        apply_edit(edit, backbone.pipeline)
        stage = "generate"
        t = time.perf_counter()
        extra = GENERATE.get((case, family), {})
        images = generate(backbone, ["a photo"], [0], num_inference_steps=2, **extra)
        row["generate_s"] = time.perf_counter() - t
        if not torch.isfinite(images).all():
            raise FloatingPointError("the generated image has non-finite values")
        row["result"] = f"OK ({edit.kind})" + "".join(f", {k} {v}" for k, v in extra.items())
    except Exception as e:  # noqa: BLE001 - the point is to report every failure and go on
        row[f"{stage}_s"] = time.perf_counter() - t  # the time until it failed
        frames = traceback.extract_tb(e.__traceback__)
        where = next((f for f in reversed(frames) if "/erasekit/" in f.filename), frames[-1] if frames else None)
        place = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
        row["result"] = f"{stage}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{place}"
        traceback.print_exc()
    row["peak_rss_gib"] = peak_rss_gib()
    return row


def cases(families: list[str], only: set[str] | None) -> list[tuple[str, str]]:
    """(family, case) for every registered method (aliases skipped) on every family it supports."""
    from erasekit.methods import available_methods

    out = []
    for family in families:
        for name, method in available_methods().items():
            if getattr(method, "alias_of", None) or family not in method.families:
                continue
            for case in [name] + [c for c, m in CASE_METHOD.items() if m == name]:
                if only is None or case in only or name in only:
                    out.append((family, case))
    return out


def table(rows: list[dict]) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = ["method", "family", "px", "build s", "erase s", "generate s", "peak RSS GiB", "result"]
    lines = [
        [
            r["method"],
            r["family"],
            str(r.get("size") or "-"),
            num(r.get("build_s"), ".1f"),
            num(r.get("erase_s"), ".1f"),
            num(r.get("generate_s"), ".1f"),
            num(r.get("peak_rss_gib"), ".2f"),
            r["result"],
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(x) for x in lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=["sd", "flux", "all"], default="all")
    parser.add_argument("--methods", help="comma-separated cases (default: every registered method)")
    parser.add_argument("--sd-size", type=int, default=None, help="SD image size (default: the UNet's, 512)")
    parser.add_argument("--flux-size", type=int, default=256, help="FLUX image size (default 256)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=JSON", help="a setting for every run"
    )
    parser.add_argument("--child", nargs=2, metavar=("FAMILY", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = [o.partition("=") for o in args.overrides]
    args.overrides = {
        k: json.loads(v) if v[:1] in '[{"-0123456789' or v in ("true", "false") else v for k, _, v in overrides
    }

    if args.child:
        args.result.write_text(json.dumps(run_case(*args.child, args)))
        return

    families = ["sd", "flux"] if args.family == "all" else [args.family]
    only = set(args.methods.split(",")) if args.methods else None
    rows = []
    for family, case in cases(families, only):
        print(f"=== {case} on {family}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "row.json"
            command = [sys.executable, __file__, "--child", family, case, "--result", str(result)]
            command += ["--flux-size", str(args.flux_size)] + (["--sd-size", str(args.sd_size)] if args.sd_size else [])
            command += [f"--set={k}={json.dumps(v)}" for k, v in args.overrides.items()]
            t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            proc = subprocess.run(command)
            if result.exists():
                row = json.loads(result.read_text())
            else:
                why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
                row = {"method": case, "family": family, "result": f"child {why} (out of memory?)"}
                after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child's, so far
                row["peak_rss_gib"] = after / 2**20 if after > before else None
        print(f"    {time.perf_counter() - t:.0f} s: {row['result']}", flush=True)
        rows.append(row)
    print(table(rows), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
