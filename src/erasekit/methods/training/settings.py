"""Settings every fine-tuning method shares; each method's Config extends them with its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...config import CheckedConfig, Range, at_least, between, positive


@dataclass
class FineTuneSettings(CheckedConfig):
    RANGES: ClassVar[dict[str, Range]] = {
        "lr": positive(),
        "steps": at_least(1),
        "batch_size": at_least(1),
        "lora_rank": at_least(1),
        "max_grad_norm": positive(),
        "checkpoint_every": at_least(0),
        "seed": at_least(0),
        "adversarial_every": at_least(1),
        "adversarial_share": between(0.0, 1.0),
        "adversarial_prompts": at_least(1),
        "adversarial_attack_steps": at_least(1),
    }

    # Which denoiser parameters train: a module group of the backbone (``Backbone.module_groups``):
    # "xattn", "noxattn" (the official ESD / EraseDiff scope), "noxattn_all", "ffn", "full".
    train_method: str = "xattn"
    lr: float = 1e-5
    steps: int = 1000
    batch_size: int = 1
    # A PEFT LoRA of this rank on the group's linear layers instead of the full tensors.
    lora_rank: int | None = None
    gradient_checkpointing: bool = False
    # "no", "fp16" or "bf16" (accelerate); CPU runs stay in fp32.
    mixed_precision: str = "no"
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 50
    # Every random draw of the method (its generated data and the engine's draws); default: the request's seed
    # (`erasekit erase --seed`). The seed used is recorded in the edit's ``data["training"]["seed"]``.
    seed: int | None = None
    # Adversarial erasure (AdvUnlearn's idea, Zhang et al. 2024, on this engine; not in the methods' papers): every
    # ``adversarial_every`` steps the white-box attack (UnlearnDiffAtk-style) runs against the model being trained
    # on ``adversarial_prompts`` target prompts, and a share ``adversarial_share`` of the target prompts the method
    # trains on carry one of the prefixes it found, so the edit is trained on the prompts that break it.
    adversarial: bool = False
    adversarial_every: int = 50
    adversarial_share: float = 0.5
    adversarial_prompts: int = 4
    adversarial_attack_steps: int = 20

    def resolve_seed(self, request_seed: int | None) -> int:
        """The seed the run uses: ``seed`` when set (``--set seed=N``), else the request's, else 0."""
        if self.seed is not None:
            return self.seed
        return 0 if request_seed is None else int(request_seed)
