"""What an optimizer plugin is and what it works with.

An optimizer is a class registered under the `fmops.optimizers` entry-point group (the built-ins
`fewshot`, `instructions` and `gepa` come in the same way). The job gives it a `Search`: the start
candidate already scored on the optimisation cases, a way to score more candidates through the
gateway within the call budget, and a way to ask the optimizer model for rewritten instructions.
The plugin proposes; the job keeps every candidate, picks the best on the optimisation cases,
proves it on the held-out cases and pushes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from fmops.errors import UserError
from fmops.plugins import load_object, object_names

if TYPE_CHECKING:
    from fmops.optimizers.search import Search

ENTRY_POINT_GROUP = "fmops.optimizers"
JSON = dict[str, Any]


class BudgetSpent(Exception):
    """The call budget cannot pay for what was asked (the search stops; what it found stands)."""


@dataclass
class Candidate:
    """A prompt's messages as a candidate version, with what changed from its parent and its
    per-case scores and answers (case index -> value) on the cases it was scored on."""

    seq: int
    messages: list[JSON]
    change: str
    parent: int | None = None
    scores: dict[int, float] = field(default_factory=dict)
    outputs: dict[int, str] = field(default_factory=dict)
    excluded: frozenset[int] = frozenset()  # cases it must not be judged on (its own demonstrations)

    @property
    def key(self) -> str:
        return hashlib.sha256(orjson.dumps(self.messages, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def mean(self, cases: list[int] | None = None) -> float | None:
        keys = [c for c in (cases if cases is not None else self.scores) if c not in self.excluded]
        values = [self.scores[c] for c in keys if c in self.scores]
        return sum(values) / len(values) if values else None


class Optimizer:
    """Base of optimizer plugins: `search` proposes candidates through the `Search` it is given."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    uses_optimizer_model: ClassVar[bool] = True

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    async def search(self, search: Search) -> None:
        raise NotImplementedError


def optimizer_names() -> set[str]:
    return object_names(ENTRY_POINT_GROUP)


def get_optimizer(name: str) -> type[Optimizer]:
    """The optimizer plugin `name` (its module alone imported); a 400 naming the installed ones."""
    obj = load_object(ENTRY_POINT_GROUP, name)
    if isinstance(obj, type) and issubclass(obj, Optimizer):
        return obj
    known = ", ".join(sorted(optimizer_names())) or "none are installed"
    raise UserError(f"no optimizer {name!r}; installed: {known}", param="optimizer")
