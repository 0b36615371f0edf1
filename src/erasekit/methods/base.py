"""What every erasure method shares: the request it answers and the registry that names it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..arguments import InvalidConceptError, concept_list, concept_text
from ..config import InvalidSettingError, parse_settings
from ..edits import Edit
from ..errors import InvalidArgumentError, InvalidEditError, UnknownMethodError, UnsupportedModelError


@dataclass
class EraseRequest:
    """What to erase.

    Attributes:
        targets: the concept(s) to erase, as text ("star", "nudity", "Van Gogh").
        anchor: what the target should turn into, for methods that map it somewhere (ESD-style, All-but-One).
        preserve: concepts that must survive untouched (used by methods with a keep/remain set).
        templates: prompt templates with a ``{}`` slot for the concept, for methods that train on prompts.
        seed: the seed every random choice of the method derives from.
        prompts: prompts that show the target, for methods that train on prompts (default: from templates).
        preserve_prompts: prompts without the target, for methods with a keep/remain set.
        anchor_prompts: one per target prompt, the same prompt with the target replaced by the anchor (or
            another concept): the "mismatched" or "alternative" prompts some methods need.
        workdir: where a training method keeps checkpoints; ``resume`` continues from them.
        adversary: for a fine-tuning method with ``adversarial=true``: ``adversary(backbone, step)`` → prompt
            prefixes that bring the target back on the model as it is now (the erase workflow builds it).
    """

    targets: list[str]
    anchor: str | None = None
    preserve: list[str] = field(default_factory=list)
    templates: list[str] | None = None
    seed: int = 0
    prompts: list[str] | None = None
    preserve_prompts: list[str] | None = None
    anchor_prompts: list[str] | None = None
    workdir: str | None = None
    resume: bool = False
    adversary: Any = None

    def target_prompts(self) -> list[str]:
        """The prompts showing the target: given ones, or the templates filled with each target."""
        if self.prompts:
            return list(self.prompts)
        templates = self.templates or DEFAULT_TEMPLATES
        return [t.format(target) for target in self.targets for t in templates]

    def paired_anchor_prompts(self, fallback: str) -> list[str]:
        """A prompt per target prompt in which the target is replaced by the anchor, or ``fallback``."""
        prompts = self.target_prompts()
        if self.anchor_prompts:
            if len(self.anchor_prompts) != len(prompts):
                raise InvalidArgumentError("anchor_prompts must pair one-to-one with the target prompts")
            return list(self.anchor_prompts)
        if self.anchor:
            out = []
            for p in prompts:
                for target in self.targets:
                    p = p.replace(target, self.anchor)
                out.append(p)
            return out
        return [fallback] * len(prompts)

    def keep_prompts(self) -> list[str]:
        if self.preserve_prompts:
            return list(self.preserve_prompts)
        templates = self.templates or DEFAULT_TEMPLATES
        return [t.format(p) for p in self.preserve for t in templates]

    def __post_init__(self):
        self.targets = concept_list(self.targets, "targets")
        if not self.targets:
            raise InvalidConceptError("an erase request needs at least one non-empty target concept")
        self.preserve = concept_list(self.preserve, "preserve", "preserved concept")
        if self.anchor is not None:
            self.anchor = concept_text(self.anchor, "anchor")
        if self.anchor in self.targets:
            raise InvalidConceptError(f"the anchor concept '{self.anchor}' is also a target; choose a different anchor")
        kept = sorted(set(self.preserve) & set(self.targets))
        if kept:
            raise InvalidConceptError(f"{', '.join(kept)} cannot be both erased and preserved")


DEFAULT_TEMPLATES = ("{}", "a photo of {}", "a painting of {}", "an image of {}")


class Method:
    """A registered erasure method. Subclasses set the class attributes and implement ``erase``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    kind: ClassVar[str]  # the kind of Edit it makes
    families: ClassVar[tuple[str, ...]]
    Config: ClassVar[type]
    notes: ClassVar[str] = ""
    # A general entry point that another registered name already covers with its defaults (``esd`` is
    # ``esd-x`` unless told otherwise): left out where "all methods" are run.
    alias_of: ClassVar[str | None] = None

    def check_family(self, family: str) -> None:
        if family not in self.families:
            raise UnsupportedModelError(
                f"method '{self.name}' supports {', '.join(self.families)} models, not {family}"
            )

    def erase(self, backbone, request: EraseRequest, config=None) -> Edit:
        raise NotImplementedError

    def new_edit(self, backbone, concepts: list[str], config, **fields) -> Edit:
        """An Edit of this method's kind made on ``backbone``: the manifest fields every method fills alike."""
        return Edit(
            kind=self.kind,
            method=self.name,
            config=dataclasses.asdict(config),
            base_model=str(backbone.name_or_path),
            concepts=list(concepts),
            family=backbone.family,
            **fields,
        )

    def apply_edit(self, edit: Edit, pipeline) -> None:
        """Install an inference-control or mask edit on ``pipeline``."""
        raise NotImplementedError(f"method '{self.name}' makes {self.kind} edits, which it does not apply itself")

    def remove_edit(self, edit: Edit, pipeline) -> None:
        raise NotImplementedError(f"method '{self.name}' cannot remove its edits")

    def make_config(self, overrides: dict[str, Any] | None = None, toy: bool = False):
        """The method's Config with ``overrides`` applied; unknown keys are an error, never ignored.

        ``toy`` starts from the Config's ``toy_defaults()`` (settings for the toy world) where it has them.
        """
        names = [f.name for f in dataclasses.fields(self.Config)]
        unknown = sorted(set(overrides or {}) - set(names))
        if unknown:
            raise InvalidSettingError(
                f"method '{self.name}' has no setting {', '.join(unknown)}; "
                f"its settings are {', '.join(names) or '(none)'}"
            )
        overrides = self.default_overrides() | parse_settings(self.Config, dict(overrides or {}))
        if toy and hasattr(self.Config, "toy_defaults"):
            return self.Config.toy_defaults(**overrides)
        return self.Config(**overrides)

    def default_overrides(self) -> dict[str, Any]:
        """Settings a registered variant fixes by default (e.g. the module group of esd-u)."""
        return {}


_REGISTRY: dict[str, Method] = {}


def register(method_cls: type[Method]) -> type[Method]:
    _REGISTRY[method_cls.name] = method_cls()
    return method_cls


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method '{name}'; available: {', '.join(sorted(_REGISTRY))}") from None


def available_methods() -> dict[str, Method]:
    return dict(sorted(_REGISTRY.items()))


def check_edit_method(edit: Edit) -> Method | None:
    """The registered method of ``edit``, refusing a manifest whose method or kind this erasekit does not know.

    Mask and inference-control edits are applied by their method, so it must be registered. A weight delta is
    applied by erasekit itself and its method is provenance only (``FineTuner`` makes them for any method
    name): an unregistered name is allowed there (``None``), but a registered method of another kind is not.
    """
    method = _REGISTRY.get(edit.method)
    if method is None and edit.kind != "weight_delta":
        raise InvalidEditError(
            f"this {edit.kind} edit was made by method '{edit.method}', which this erasekit "
            f"does not have (available: {', '.join(sorted(_REGISTRY))}); it cannot be applied"
        )
    if method is not None and method.kind != edit.kind:
        raise InvalidEditError(
            f"the manifest says this is a {edit.kind} edit by '{edit.method}', but that method "
            f"makes {method.kind} edits; the manifest was altered or is damaged"
        )
    return method
