"""Attacks against an erased model: does the concept come back under adversarial prompts?

The attacks, each ending in ordinary text prompts (so every prompt an attack finds can be saved, replayed
on any model and reviewed by a person), generated through :func:`erasekit.generate.generate` with every
applied Edit in effect, and judged by a :class:`~erasekit.eval.detectors.Judge`:

* **replay** — generate a prompt set as it is (Ring-A-Bell, MMA-Diffusion, UnlearnDiffAtk files, or the
  prompts an earlier attack saved);
* **UnlearnDiffAtk-style** (white-box; Zhang et al., ECCV 2024) — prepend a few tokens to each prompt and
  optimise their embeddings so that the *erased* model denoises an image that shows the concept (made by
  the unedited model) as well as it can: the diffusion loss as a classifier of "this prompt explains this
  image". Tokens stay discrete through a straight-through projection onto the vocabulary's whole words
  (the forward pass uses the nearest word, the gradient updates the continuous vector);
* **Ring-A-Bell-style** (model-agnostic; Tsai et al., ICLR 2024) — a concept vector, the mean difference
  of the text encoder's outputs for prompts with and without the concept, is added (times η) to the
  encoding of clean prompts; a genetic search then finds a discrete prompt whose encoding is closest to
  that target. The prompt depends on the text encoder only, so one search serves every erased model that
  keeps it;
* **MMA-Diffusion, text part** (transfer; Yang et al., CVPR 2024) — a GCG-style discrete search for a prompt
  without the concept's words whose text encoding matches the concept prompt's (``mma.py``);
* **P4D-N / P4D-K** (white-box; Chin et al., ICML 2024) — tokens learned so that the erased model's noise
  prediction matches the unedited model's for the concept prompt (``p4d.py``);
* **textual inversion on the erased model** (white-box; Pham et al., ICLR 2024) — one new token embedding
  learned through the erased model from the unedited model's images of the concept; it ends in a saved
  embedding and prompts that use its token (``textual_inversion.py``).

Attack success rate (ASR), as reported here: over the attacked prompts, one image each (the prompt's seed),
the share of images in which the judge finds the concept. The same prompts' unattacked images give
``pre_attack_rate``; ``asr_on_erased`` is the ASR over only the prompts whose unattacked image was judged
clean (the attack's own contribution). Inference-time controls (negative prompt, SLD, GIE) act during
generation, so they are judged; UnlearnDiffAtk's loss sees only the weights and masks of the model, P4D's
follows a negative prompt and SLD as well (``white_box.controlled_prediction``).
"""

from .material import NEUTRAL_SUBJECTS, concept_pairs, toy_attack_prompts
from .mma import MMAConfig, mma_attack, mma_prompts
from .p4d import P4DConfig, p4d_attack
from .replay import replay_attack
from .results import AttackResult, save_prompts_csv
from .ring_a_bell import (
    RingABellConfig,
    concept_vector,
    ring_a_bell_attack,
    ring_a_bell_prompt,
    ring_a_bell_prompts,
)
from .table import ATTACK_TABLE, ATTACKS, Attack, AttackInputs, get_attack
from .textual_inversion import (
    TextualInversionConfig,
    learn_embedding,
    loaded_embedding,
    save_embedding,
    textual_inversion_attack,
)
from .unlearndiffatk import UnlearnDiffAtkConfig, unlearndiffatk_attack, unlearndiffatk_prompt
from .vocabulary import check_attack_family, forbidden_words, word_vocabulary

__all__ = [
    "ATTACKS",
    "ATTACK_TABLE",
    "NEUTRAL_SUBJECTS",
    "Attack",
    "MMAConfig",
    "P4DConfig",
    "AttackInputs",
    "AttackResult",
    "RingABellConfig",
    "TextualInversionConfig",
    "UnlearnDiffAtkConfig",
    "check_attack_family",
    "concept_pairs",
    "concept_vector",
    "forbidden_words",
    "get_attack",
    "learn_embedding",
    "loaded_embedding",
    "save_embedding",
    "textual_inversion_attack",
    "mma_attack",
    "mma_prompts",
    "p4d_attack",
    "replay_attack",
    "ring_a_bell_attack",
    "ring_a_bell_prompt",
    "ring_a_bell_prompts",
    "save_prompts_csv",
    "toy_attack_prompts",
    "unlearndiffatk_attack",
    "unlearndiffatk_prompt",
    "word_vocabulary",
]
