"""Adversarial erasure (``--set adversarial=true`` for a fine-tuning method): the white-box attack run against the
model while it is trained, so that the edit is trained on the prompts that break it.

This is AdvUnlearn's idea (Zhang et al., "Defensive Unlearning with Adversarial Training for Robust Concept
Erasure in Diffusion Models", NeurIPS 2024) on our engine, beyond the four methods' papers: every
``adversarial_every`` steps the UnlearnDiffAtk-style attack finds, for ``adversarial_prompts`` target prompts, the
words that, prepended, let the *current* model denoise the unedited model's image of the prompt best; the method's
target prompts then carry one of those prefixes in a share ``adversarial_share`` of draws (``FineTuner.adversarial``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UnsupportedModelError
from ..eval.attacks import UnlearnDiffAtkConfig, forbidden_words, unlearndiffatk_prompt, word_vocabulary
from ..generate import generate


class WhiteBoxAdversary:
    """``adversary(backbone, step)`` → prefixes found against ``backbone`` as it is at ``step``.

    The attack's target images are the unedited model's images of the prompts, made when the adversary is built
    (before any training step, so a resumed run has the same ones)."""

    def __init__(self, backbone, concept: str, prompts: Sequence[str], config, seed: int = 0):
        if backbone.family != "sd":
            raise UnsupportedModelError(
                "adversarial=true runs the white-box attack, which needs a CLIP-conditioned UNet (SD 1.x/2.x or "
                f"toy-sd); {backbone.family} models cannot train adversarially"
            )
        self.concept, self.seed = concept, seed
        self.prompts = list(prompts)[: config.adversarial_prompts]
        self.steps = config.adversarial_attack_steps
        self.seeds = [seed + 7919 * i for i in range(len(self.prompts))]
        self.targets = generate(backbone, self.prompts, self.seeds, progress=False)
        self.vocab = word_vocabulary(backbone.tokenizer, forbid=forbidden_words(concept, (), True))
        self.history: list[dict] = []

    def __call__(self, backbone, step: int) -> list[str]:
        prefixes = []
        for i, prompt in enumerate(self.prompts):
            config = UnlearnDiffAtkConfig(steps=self.steps, seed=self.seed + step + i)
            text, loss = unlearndiffatk_prompt(backbone, prompt, self.targets[i], config, self.vocab)
            prefixes.append(text[: -len(prompt)].strip())
            self.history.append({"step": step, "prompt": prompt, "prefix": prefixes[-1], "loss": loss})
        return prefixes
