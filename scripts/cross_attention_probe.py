"""How token-selective is a Stable Diffusion UNet's cross-attention? GIE needs it to be.

    python scripts/cross_attention_probe.py [--model toy-sd] [--prompt "a red striped star"]

Generates the prompt (4 seeds, 25 steps, CFG 7.5) and records every cross-attention map of the conditional
rows: the mean entropy of a query's attention over the text slots (uniform = ln 77 = 4.34 nats; lower = more
selective), the mean largest weight a query gives any slot, and the share of attention each token of the
prompt receives (the rest goes to the padding slots). On toy-sd the maps are close to uniform, which is why
GIE's inhibitor has nothing concept-shaped to act on there (README, "GIE on toy-sd").
"""

import argparse

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from erasekit.cli import _quiet_libraries
from erasekit.models import load


class RecordingProcessor(AttnProcessor2_0):
    """Diffusers' processor, plus statistics of the conditional rows' cross-attention maps."""

    def __init__(self, records: list):
        super().__init__()
        self.records = records

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        if encoder_hidden_states is not None:
            flat = hidden_states if hidden_states.ndim == 3 else hidden_states.flatten(2).transpose(1, 2)
            if attn.group_norm is not None:
                flat = attn.group_norm(flat.transpose(1, 2)).transpose(1, 2)
            query = attn.head_to_batch_dim(attn.to_q(flat))
            key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
            maps = attn.get_attention_scores(query, key).unflatten(0, (-1, attn.heads))
            self.records.append(maps[maps.shape[0] // 2 :])  # the conditional half of the CFG batch
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy-sd")
    parser.add_argument("--prompt", default="a red striped star")
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    _quiet_libraries()
    backbone = load(args.model)
    pipe = backbone.pipeline
    records: list[torch.Tensor] = []
    original = dict(pipe.unet.attn_processors)
    pipe.unet.set_attn_processor(RecordingProcessor(records))
    try:
        with torch.no_grad():
            pipe(
                [args.prompt] * 4,
                generator=[torch.Generator().manual_seed(i) for i in range(4)],
                num_inference_steps=args.steps,
                guidance_scale=7.5,
                output_type="pt",
            )
    finally:
        pipe.unet.set_attn_processor(original)
    entropy = torch.stack([-(m * m.clamp_min(1e-12).log()).sum(-1).mean() for m in records]).mean()
    largest = torch.stack([m.max(-1).values.mean() for m in records]).mean()
    per_slot = torch.stack([m.mean(dim=(0, 1, 2)) for m in records]).mean(0)
    layout = backbone.token_layout(args.prompt)
    slots = len(per_slot)
    print(
        f"{args.model}: {len(records)} cross-attention maps; query entropy {entropy:.3f} nats "
        f"(uniform {torch.tensor(float(slots)).log():.3f}); mean largest weight {largest:.3f}"
    )
    print("attention per token: " + ", ".join(f"{t} {float(v):.3f}" for t, v in zip(layout, per_slot)))
    print(f"padding slots together: {float(per_slot[len(layout) :].sum()):.3f}")


if __name__ == "__main__":
    main()
