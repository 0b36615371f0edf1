"""The fine-tuning engine shared by every weight-changing method (EraseDiff, All-but-One, ESD).

What it owns, so that methods only write their loss:

* which parameters train: a module group of the backbone (``Backbone.module_groups``: ``xattn``,
  ``noxattn`` — the official ESD / EraseDiff scope —, ``noxattn_all``, ``full``, ...) or a PEFT LoRA on the
  group's linear layers;
* the frozen teacher: the *same* denoiser called with the original values of the trained tensors swapped in
  (``torch.func.functional_call``), or with the LoRA adapters disabled, instead of a second full copy;
* accelerate for device placement and mixed precision; optional gradient checkpointing;
* a seeded generator for every random draw of the method (seeded by ``config.seed``, else the request's seed),
  saved in checkpoints so that a resumed run continues exactly as an uninterrupted one;
* periodic checkpoints in the format every training method shares (``checkpoint``: safetensors + JSON, never
  pickle), ``resume`` by its one rule, and a NaN guard that stops the run and keeps the last good checkpoint;
* the progress bar and the result: a weight-delta (or LoRA) Edit of the changed tensors only.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ...checksums import fingerprint
from ...config import InvalidSettingError
from ...edits import Edit
from ...errors import ErasekitError, NoOpEditError
from ...progress import progress_bar
from .checkpoint import CHECKPOINT_DIR, ResumeMismatchError, TrainingCheckpoint, run_identity

__all__ = ["CHECKPOINT_DIR", "FineTuner", "ResumeMismatchError", "TrainingDivergedError"]


class TrainingDivergedError(ErasekitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class _Teacher(nn.Module):
    """Calls the student module with the original values of the trained tensors: the frozen model, for free."""

    def __init__(self, student: nn.Module, originals: dict[str, torch.Tensor] | None, lora: bool):
        super().__init__()
        self._student = [student]  # a list, so the student is not registered as a submodule
        self._originals = originals
        self._lora = lora

    def forward(self, *args, **kwargs):
        student = self._student[0]
        with torch.no_grad():
            if self._lora:
                student.disable_adapters()
                try:
                    return student(*args, **kwargs)
                finally:
                    student.enable_adapters()
            return torch.func.functional_call(student, self._originals, args, kwargs, strict=False)


class FineTuner:
    """Train a backbone's denoiser for a method.

    Args:
        backbone: the model to edit (its denoiser is trained in place).
        method: the method's registered name (goes into checkpoints and the Edit).
        config: the method's Config dataclass; it must have ``train_method``, ``lr``, ``steps``, ``lora_rank``,
            ``gradient_checkpointing``, ``mixed_precision``, ``checkpoint_every`` and ``seed`` fields.
        concepts: the erased concepts (for the Edit).
        workdir: where checkpoints go (``<workdir>/checkpoint``); ``None`` keeps none.
        resume: continue from ``<workdir>/checkpoint``; when there is none yet the run starts afresh from step 0,
            and a checkpoint of another run raises ``ResumeMismatchError`` (``checkpoint``'s resume rule).
        seed: the request's seed (``EraseRequest.seed``, ``erasekit erase --seed``): the engine's draws are seeded
            by ``config.seed`` when it is set, else by this, else by 0 (``FineTuneSettings.resolve_seed``). The
            seed used is ``self.seed``, part of the run's identity and recorded in the Edit's
            ``data["training"]["seed"]``.
    """

    def __init__(
        self,
        backbone,
        method: str,
        config,
        concepts: list[str],
        workdir: str | Path | None = None,
        resume: bool = False,
        seed: int | None = None,
        adversary: Callable | None = None,
    ):
        from accelerate import Accelerator

        self.backbone = backbone
        self.method = method
        self.config = config
        self.concepts = list(concepts)
        self.workdir = Path(workdir) if workdir is not None else None
        self.step = 0
        self.seed = config.resolve_seed(seed)
        self.adversary = adversary
        self.adversarial_prefixes: list[str] = []
        if getattr(config, "adversarial", False) and adversary is None:
            raise InvalidSettingError(
                "adversarial=true needs an adversary (the white-box attack against the model being trained), which "
                "erasekit.erase / `erasekit erase` build; pass EraseRequest.adversary when calling a method directly"
            )
        if config.lora_rank is not None and config.lora_rank <= 0:
            raise InvalidSettingError(f"lora_rank must be a positive integer, got {config.lora_rank}")
        groups = backbone.module_groups()
        if config.train_method not in groups:
            raise InvalidSettingError(
                f"train_method '{config.train_method}' is not a module group; choose one of {', '.join(groups)}"
            )

        denoiser = backbone.denoiser
        backbone.freeze()  # nothing trains but the chosen tensors (text encoders and VAE included)
        self.lora = config.lora_rank is not None
        if self.lora:
            self._add_lora(denoiser, groups[config.train_method])
            self.trainable = {n: p for n, p in denoiser.named_parameters() if "lora_" in n}
            for p in self.trainable.values():
                p.requires_grad_(True)
            originals = None
        else:
            names = set(groups[config.train_method])
            self.trainable = {n: p for n, p in denoiser.named_parameters() if n in names}
            for p in self.trainable.values():
                p.requires_grad_(True)
            originals = {n: p.detach().clone() for n, p in self.trainable.items()}
        if not self.trainable:
            raise InvalidSettingError(f"module group '{config.train_method}' has no parameters in this model")
        self.originals = originals
        if config.gradient_checkpointing:
            denoiser.enable_gradient_checkpointing()
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=backbone.device.type == "cpu")
        self.optimizer = torch.optim.Adam(list(self.trainable.values()), lr=config.lr)
        self.student, self.optimizer = self.accelerator.prepare(denoiser, self.optimizer)
        self.teacher = _Teacher(denoiser, originals, self.lora)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rng = random.Random(self.seed)
        torch.manual_seed(self.seed)
        identity = run_identity(method, backbone.name_or_path, self.concepts, config)
        # The seed the run resolved, not the setting (None: "the request's"): a resume with another --seed is
        # another run.
        identity["config"]["seed"] = self.seed
        self.checkpoint = TrainingCheckpoint(self.workdir, identity)
        if resume:
            self._resume()

    @classmethod
    def for_request(cls, backbone, method: str, config, request, seed: int | None = None) -> FineTuner:
        """The tuner of ``method``'s run for ``request`` (an ``EraseRequest``): its targets, work folder, resume
        flag and adversary, and its seed unless ``seed`` is given."""
        return cls(
            backbone,
            method,
            config,
            request.targets,
            request.workdir,
            request.resume,
            seed=request.seed if seed is None else seed,
            adversary=request.adversary,
        )

    # ------------------------------------------------------------------------------------------ predictions

    def predict(self, latents, t, cond) -> torch.Tensor:
        """The student's prediction (under autograd, in the configured precision)."""
        with self.accelerator.autocast():
            return self.backbone.predict(latents, t, cond, denoiser=self.student).float()

    @torch.no_grad()
    def teacher_predict(self, latents, t, cond) -> torch.Tensor:
        """The original model's prediction, without a second copy of the weights."""
        with self.accelerator.autocast():
            return self.backbone.predict(latents, t, cond, denoiser=self.teacher).float()

    def randn(self, *shape) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator).to(self.backbone.device)

    def rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator).to(self.backbone.device)

    def randint(self, high: int, shape) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.generator).to(self.backbone.device)

    # ----------------------------------------------------------------------------------------------- loop

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def adversarial(self, texts: list[str]) -> list[str]:
        """The target prompts a method trains on, each with probability ``adversarial_share`` prefixed by one of
        the attack's latest prefixes (``adversarial=true``); unchanged, and no random draw, otherwise."""
        if not getattr(self.config, "adversarial", False) or not self.adversarial_prefixes:
            return list(texts)
        out = []
        for text in texts:
            if float(self.rand(1)) < self.config.adversarial_share:
                prefix = self.adversarial_prefixes[int(self.randint(len(self.adversarial_prefixes), (1,)))]
                text = f"{prefix} {text}"
            out.append(text)
        return out

    def _refresh_adversary(self) -> None:
        self.adversarial_prefixes = list(self.adversary(self.backbone, self.step))

    def run(self, train_step: Callable[[FineTuner], dict[str, float]], description: str | None = None) -> dict:
        """Call ``train_step(self)`` until ``config.steps``; it computes gradients and returns its logs.

        The engine zeroes gradients before, checks the loss for NaN, clips and steps the optimizer after, and
        writes checkpoints every ``config.checkpoint_every`` steps and at the end.
        """
        cfg = self.config
        start, logs = time.time(), {}
        with progress_bar(description or self.method, total=cfg.steps) as bar:
            bar.update(self.step)
            while self.step < cfg.steps:
                if getattr(cfg, "adversarial", False) and (
                    self.step % cfg.adversarial_every == 0 or not self.adversarial_prefixes
                ):
                    self._refresh_adversary()
                self.optimizer.zero_grad(set_to_none=True)
                logs = train_step(self)
                if not all(math.isfinite(float(v)) for v in logs.values()):
                    where = (
                        f"; the last good checkpoint is in {self.checkpoint.folder}" if self.checkpoint.exists() else ""
                    )
                    raise TrainingDivergedError(
                        f"{self.method}: loss became {logs} at step {self.step + 1}{where}; lower the learning rate"
                    )
                if getattr(cfg, "max_grad_norm", None):
                    torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), cfg.max_grad_norm)
                self.optimizer.step()
                self.step += 1
                bar.update(self.step, **{k: float(v) for k, v in logs.items()})
                if (
                    self.workdir is not None
                    and cfg.checkpoint_every
                    and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps)
                ):
                    self.save_checkpoint()
        self.last_run = {
            "steps": self.step,
            "seconds": round(time.time() - start, 2),
            "final": {k: float(v) for k, v in logs.items()},
        }
        return self.last_run

    # -------------------------------------------------------------------------------------------- results

    def _component(self) -> str:
        return "unet" if self.backbone.family == "sd" else "transformer"

    def changed_tensors(self) -> dict[str, torch.Tensor]:
        """Trained tensors, keyed ``<component>.<name>`` as ``Edit`` stores them."""
        return {f"{self._component()}.{n}": p.detach().float().cpu().clone() for n, p in self.trainable.items()}

    def make_edit(self, notes: str = "", data: dict | None = None) -> Edit:
        """The weight-delta Edit, with the fingerprint of the original values it replaces (see ``edits``)."""
        if self._unchanged():
            raise NoOpEditError(
                f"{self.method}: training changed nothing (every trained weight is as it was: "
                f"lr {self.config.lr:g} is too small for {self.step} step(s)); no edit was made"
            )
        data = dict(data or {})
        data["training"] = dict(getattr(self, "last_run", None) or {}) | {"seed": self.seed}
        if self.lora:
            data["lora"] = self._lora_config
        base = self._lora_base if self.lora else fingerprint(self.originals)
        return Edit(
            kind="weight_delta",
            method=self.method,
            config=asdict(self.config),
            base_model=str(self.backbone.name_or_path),
            concepts=self.concepts,
            family=self.backbone.family,
            tensors=self.changed_tensors(),
            data=data,
            notes=notes,
            base_weights={f"{self._component()}.{n}": v for n, v in base.items()},
        )

    def _unchanged(self) -> bool:
        if self.lora:  # PEFT starts lora_B at zero: the adapter is a no-op until one of them moves
            return all(not p.any() for n, p in self.trainable.items() if "lora_B" in n)
        return all(torch.equal(p.detach(), self.originals[n]) for n, p in self.trainable.items())

    # ------------------------------------------------------------------------------------------------ LoRA

    def _add_lora(self, denoiser: nn.Module, param_names: list[str]) -> None:
        from peft import LoraConfig

        wanted = {n.rsplit(".", 1)[0] for n in param_names}
        modules = sorted(n for n, m in denoiser.named_modules() if n in wanted and isinstance(m, nn.Linear))
        if not modules:
            raise InvalidSettingError(f"module group '{self.config.train_method}' has no linear layers for LoRA")
        rank = self.config.lora_rank
        self._lora_config = {"r": rank, "lora_alpha": rank, "target_modules": modules, "init_lora_weights": True}
        # The adapted layers' own weights, fingerprinted before adapters wrap them (``Edit.base_weights``).
        self._lora_base = fingerprint({f"{m}.weight": denoiser.get_submodule(m).weight for m in modules})
        torch.manual_seed(self.seed)
        denoiser.add_adapter(LoraConfig(**self._lora_config), adapter_name="erasekit")

    # ----------------------------------------------------------------------------------------- checkpoints

    def _generators(self) -> dict[str, torch.Generator]:
        return {"generator": self.generator}

    def save_checkpoint(self) -> Path | None:
        """Write the trained tensors, optimizer moments and RNG states atomically (``checkpoint``'s format)."""
        extra = {"adversarial_prefixes": self.adversarial_prefixes} if self.adversarial_prefixes else None
        return self.checkpoint.save(self.step, self.trainable, self.optimizer, self._generators(), self.rng, extra)

    def _resume(self) -> None:
        """Continue from the checkpoint; none yet is a fresh start from step 0 (``checkpoint``'s resume rule)."""
        self.step = self.checkpoint.restore(self.trainable, self.optimizer, self._generators(), self.rng)
        self.adversarial_prefixes = list(self.checkpoint.extra.get("adversarial_prefixes", []))
