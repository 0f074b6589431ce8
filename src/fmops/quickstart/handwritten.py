"""Hand-written triage tickets with their labels: `load() -> [HandwrittenTicket]`.

Forty tickets written by a person in styles the generator (fmops.quickstart.tickets) does not use:
forwarded threads, SMS-terse notes, rambling stories, formal letters, log lines, sarcasm, replies to an
agent. Each is labelled by the rules the prompt states and says which rule decides (`why`). They show
whether a model learnt the rules or the generator's phrasings, so they live beside the tests
(tests/data/triage_handwritten.jsonl), not in the package: an installed fmops has no copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fmops.quickstart.rules import CATEGORY_NAMES, PRIORITY_NAMES, Category, Priority

# src/fmops/quickstart/handwritten.py -> the repository root is three folders up from this one.
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "tests" / "data" / "triage_handwritten.jsonl"


@dataclass(frozen=True, slots=True)
class HandwrittenTicket:
    id: str
    text: str
    category: Category
    priority: Priority
    why: str  # which rule decides the label, in one sentence

    def label(self) -> dict[str, str]:
        return {"category": self.category, "priority": self.priority}


def load(path: Path | None = None) -> list[HandwrittenTicket]:
    """The hand-written tickets, in file order, from `path` (default: the repository's
    tests/data/triage_handwritten.jsonl).

    Raises FileNotFoundError naming the path when the file is not there (an installed package ships
    without it: run from a checkout or pass `path`), ValueError on a row with a label outside the rules.
    """
    path = DEFAULT_PATH if path is None else path
    if not path.is_file():
        raise FileNotFoundError(
            f"hand-written triage tickets not found at {path}: they ship with the fmops repository "
            "(tests/data/triage_handwritten.jsonl), not the installed package; pass load(path=...)"
        )
    tickets: list[HandwrittenTicket] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            tickets.append(_ticket(json.loads(line), f"{path}:{number}"))
    return tickets


# Lookups that narrow a row's strings to the label types, refusing what the rules don't name.
_CATEGORIES: dict[str, Category] = {name: name for name in CATEGORY_NAMES}
_PRIORITIES: dict[str, Priority] = {name: name for name in PRIORITY_NAMES}


def _ticket(row: dict[str, str], where: str) -> HandwrittenTicket:
    category, priority = _CATEGORIES.get(row["category"]), _PRIORITIES.get(row["priority"])
    if category is None or priority is None:
        raise ValueError(
            f"{where}: label {row['category']!r}/{row['priority']!r} is not one of"
            f" {', '.join(CATEGORY_NAMES)} / {', '.join(PRIORITY_NAMES)}"
        )
    return HandwrittenTicket(row["id"], row["text"], category, priority, row["why"])
