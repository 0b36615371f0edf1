"""What every erasure method shares: the request it answers and the registry that names it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..edits import Edit
from ..errors import UnknownMethodError, UnsupportedModelError


@dataclass
class EraseRequest:
    """What to erase.

    Attributes:
        targets: the concept(s) to erase, as text ("star", "nudity", "Van Gogh").
        anchor: what the target should turn into, for methods that map it somewhere (ESD-style, All-but-One).
        preserve: concepts that must survive untouched (used by methods with a keep/remain set).
        templates: prompt templates with a ``{}`` slot for the concept, for methods that train on prompts.
        seed: the seed every random choice of the method derives from.
    """

    targets: list[str]
    anchor: str | None = None
    preserve: list[str] = field(default_factory=list)
    templates: list[str] | None = None
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        self.targets = [t.strip() for t in self.targets if t and t.strip()]
        if not self.targets:
            raise ValueError("an erase request needs at least one non-empty target concept")
        if self.anchor is not None and self.anchor.strip() in self.targets:
            raise ValueError(f"the anchor concept '{self.anchor}' is also a target; choose a different anchor")


class Method:
    """A registered erasure method. Subclasses set the class attributes and implement ``erase``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    kind: ClassVar[str]  # the kind of Edit it makes
    families: ClassVar[tuple[str, ...]]
    Config: ClassVar[type]
    notes: ClassVar[str] = ""

    def check_family(self, family: str) -> None:
        if family not in self.families:
            raise UnsupportedModelError(
                f"method '{self.name}' supports {', '.join(self.families)} models, not {family}"
            )

    def erase(self, backbone, request: EraseRequest, config=None) -> Edit:
        raise NotImplementedError

    def apply_edit(self, edit: Edit, pipeline) -> None:
        """Install an inference-control or mask edit on ``pipeline``."""
        raise NotImplementedError(f"method '{self.name}' makes {self.kind} edits, which it does not apply itself")

    def remove_edit(self, edit: Edit, pipeline) -> None:
        raise NotImplementedError(f"method '{self.name}' cannot remove its edits")

    def make_config(self, overrides: dict[str, Any] | None = None):
        """The method's Config with ``overrides`` applied; unknown keys are an error, never ignored."""
        fields = getattr(self.Config, "__dataclass_fields__", {})
        unknown = sorted(set(overrides or {}) - set(fields))
        if unknown:
            raise ValueError(f"method '{self.name}' has no setting {', '.join(unknown)}; "
                             f"its settings are {', '.join(fields) or '(none)'}")
        return self.Config(**(overrides or {}))


_REGISTRY: dict[str, Method] = {}


def register(method_cls: type[Method]) -> type[Method]:
    _REGISTRY[method_cls.name] = method_cls()
    return method_cls


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown method '{name}'; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def available_methods() -> dict[str, Method]:
    return dict(sorted(_REGISTRY.items()))
