"""The one place a pipeline keeps what erasekit's applied edits put on it: ``PipelineState``.

Every edit applied through ``erasekit.methods.apply_edit`` (and every inference-time control it installs)
records itself in a single ``PipelineState`` object stored under one attribute of the pipeline, ``STATE_ATTR``.
Nothing else of erasekit's is set on the pipeline object itself.

* Writers open the state with ``editing_state(pipeline)``: it gives the pipeline's state (creating it on first
  use, like ``pipeline_state``) and, when the block ends, deletes the attribute again if nothing is applied any
  more. So a pipeline whose last edit was removed has exactly the attributes of one that never had an edit.
* Readers (generation, ``gie_sampler``, scripts) use ``existing_state`` or the helpers below, which never create
  the attribute.

This module is core: it knows nothing of edits, methods or models. An "edit" here is any object with a
``summary()`` method returning a dict (``erasekit.edits.Edit``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidEditError

# The pipeline attribute that holds the PipelineState, present only while something is applied.
STATE_ATTR = "_erasekit_state"


@dataclass(eq=False)
class Installed:
    """One object an applied edit installed on the pipeline, with the edit that owns it.

    Attributes:
        owner: ``id()`` of the edit object that installed it.
        summary: that edit's ``summary()`` (method, kind, concepts, created), to recognise the same edit loaded again.
        thing: the installed object: MCE's ``MaskHooks``, GIE's ``InhibitedSampler``.
    """

    owner: int
    summary: dict
    thing: Any


@dataclass(eq=False)
class PipelineState:
    """What the edits applied to one pipeline have set on it; stored under ``STATE_ATTR``, one per pipeline.

    Attributes:
        edits: the applied edits' summaries (``Edit.summary()``), in the order they were applied, weight deltas
            included. Written by ``erasekit.methods.apply_edit`` / ``remove_edit`` (appended on apply, one equal
            entry removed on remove); read by the weight-delta base check and by callers asking what is applied.
        call_kwargs: extra ``__call__`` arguments inference-control edits ask for (``negative_prompt``). Written by
            the methods through ``set_call_kwargs`` (negprompt); read by ``erasekit.generate.generate``.
        call_override: a callable that replaces the pipeline's own ``__call__`` (same arguments, same kind of
            output), or None. Written by GIE through ``set_call_override`` (its two-branch sampler), at most one at
            a time (``check_sampler_free``); read by ``erasekit.generate.generate``.
        installed: the objects edits installed, each with the edit that owns it (``Installed``), in order:
            MCE's mask hooks (several mask edits compose: their hooks multiply), GIE's sampler. Written by those
            methods' ``apply_edit`` (``install``) and ``remove_edit`` (``uninstall``); read by ``gie_sampler``
            and scripts that drive the hooks (``things``).
        negative_prompts: the negative prompt of each applied negprompt edit, in order; negprompt joins them
            (", ") into ``call_kwargs["negative_prompt"]`` so that several such edits compose. Written by
            negprompt's ``apply_edit`` / ``remove_edit``.
    """

    edits: list[dict] = field(default_factory=list)
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    call_override: Callable | None = None
    installed: list[Installed] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing applied: the pipeline is as if no edit had ever touched it."""
        return not (
            self.edits or self.call_kwargs or self.call_override is not None or self.installed or self.negative_prompts
        )

    # ------------------------------------------------------------------------------------ call arguments

    def set_call_kwargs(self, **kwargs) -> None:
        """Merge ``kwargs`` into ``call_kwargs``; a value of None takes that argument off."""
        for key, value in kwargs.items():
            if value is None:
                self.call_kwargs.pop(key, None)
            else:
                self.call_kwargs[key] = value

    def set_call_override(self, sampler: Callable | None) -> None:
        """Replace the pipeline's ``__call__`` by ``sampler`` (None gives it back); one replacement at a time."""
        if sampler is not None:
            self.check_sampler_free()
        self.call_override = sampler

    def check_sampler_free(self, wanting: str = "this edit") -> None:
        """Refuse when an applied edit already replaces the pipeline's ``__call__``, naming that edit's method."""
        if self.call_override is None:
            return
        owner = next((e.summary.get("method") for e in self.installed if e.thing is self.call_override), None)
        raise InvalidEditError(
            f"another edit ({owner or 'unknown'}) already replaces this pipeline's sampler, and {wanting} cannot run "
            "inside another one: apply one of the two"
        )

    # ------------------------------------------------------------------------------------ installed objects

    def install(self, edit, thing) -> None:
        """Record ``thing`` as installed by ``edit``."""
        self.installed.append(Installed(owner=id(edit), summary=edit.summary(), thing=thing))

    def uninstall(self, edit) -> Any | None:
        """Forget and return the object ``edit`` installed (the caller takes it off), or None if it installed none.

        The one this very edit object installed is taken first; else the last one installed by an equal edit
        (the same edit loaded again: equal summaries).
        """
        summary = edit.summary()
        matches = [i for i, entry in enumerate(self.installed) if entry.summary == summary]
        if not matches:
            return None
        own = [i for i in matches if self.installed[i].owner == id(edit)]
        return self.installed.pop((own or matches)[-1]).thing

    def things(self, kind: type | tuple[type, ...] | None = None) -> list:
        """The installed objects (only those that are instances of ``kind`` if given), in installation order."""
        return [e.thing for e in self.installed if kind is None or isinstance(e.thing, kind)]

    # ------------------------------------------------------------------------------------ applied edits

    def remove_summary(self, summary: dict) -> None:
        """Take one entry equal to ``summary`` (the last) off ``edits``; none there, nothing happens."""
        for i in range(len(self.edits) - 1, -1, -1):
            if self.edits[i] == summary:
                del self.edits[i]
                return


def existing_state(pipeline) -> PipelineState | None:
    """The pipeline's state if any edit has set one, else None; never creates it."""
    state = getattr(pipeline, STATE_ATTR, None)
    return state if isinstance(state, PipelineState) else None


def pipeline_state(pipeline) -> PipelineState:
    """The pipeline's state, created (and stored under ``STATE_ATTR``) on first use.

    A writer should prefer ``editing_state``, which also deletes the attribute again when nothing is left applied.
    """
    state = existing_state(pipeline)
    if state is None:
        state = PipelineState()
        setattr(pipeline, STATE_ATTR, state)
    return state


def release_state(pipeline, state: PipelineState | None = None) -> None:
    """Delete the pipeline's state attribute if nothing is applied; else make sure ``state`` is the one stored."""
    state = state if state is not None else existing_state(pipeline)
    if state is None:
        return
    if state.empty:
        if existing_state(pipeline) is state:
            delattr(pipeline, STATE_ATTR)
    elif existing_state(pipeline) is not state:
        setattr(pipeline, STATE_ATTR, state)


@contextmanager
def editing_state(pipeline) -> Iterator[PipelineState]:
    """``with editing_state(pipeline) as state:`` change ``state``; when the block ends (even by an error) the
    attribute is deleted if nothing is applied any more. Blocks may nest (a method's inside ``apply_edit``'s)."""
    state = pipeline_state(pipeline)
    try:
        yield state
    finally:
        release_state(pipeline, state)


# ---------------------------------------------------------------------------------------- helpers


def applied_edits(pipeline) -> list[dict]:
    """The summaries of the edits applied to ``pipeline``, in order (a copy)."""
    state = existing_state(pipeline)
    return [dict(e) for e in state.edits] if state else []


def call_kwargs(pipeline) -> dict:
    """Extra ``__call__`` arguments that applied inference-control edits ask for (a copy)."""
    state = existing_state(pipeline)
    return dict(state.call_kwargs) if state else {}


def call_override(pipeline) -> Callable | None:
    """The callable an applied edit (GIE) put in place of the pipeline's ``__call__``, if any."""
    state = existing_state(pipeline)
    return state.call_override if state else None


def set_call_kwargs(pipeline, **kwargs) -> None:
    """Merge ``kwargs`` into the pipeline's call arguments; a value of None takes that argument off."""
    with editing_state(pipeline) as state:
        state.set_call_kwargs(**kwargs)


def set_call_override(pipeline, sampler: Callable | None) -> None:
    """Replace the pipeline's ``__call__`` by ``sampler`` (None gives it back); one replacement at a time."""
    with editing_state(pipeline) as state:
        state.set_call_override(sampler)
