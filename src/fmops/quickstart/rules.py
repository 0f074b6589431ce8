"""The triage rules as data: the prompt states them (fmops.quickstart.prompt) and the generator labels
its tickets by them (fmops.quickstart.tickets), so the two cannot drift.

A ticket is read as clues: the problems it reports, the questions it asks, background mentions, and
threats. The category and the priority follow from the clues alone, never from which template wrote them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Category = Literal["billing", "account", "shipping", "technical", "other"]
Priority = Literal["low", "normal", "urgent"]
# problem: something is wrong; blocker: the customer cannot use the service at all; question: asks or
# suggests, nothing is wrong; context: a background mention ("I paid by card"); threat: legal or chargeback.
Kind = Literal["problem", "blocker", "question", "context", "threat"]

# Precedence: when problems of several topics are reported, the first in this order wins.
CATEGORIES: tuple[tuple[Category, str], ...] = (
    ("billing", "money: a wrong, double or unexpected charge, a refund, an invoice, a failed payment"),
    ("account", "signing in, passwords, two-factor codes, a locked or hacked account, profile details"),
    ("shipping", "a delivery: a late, lost, damaged or wrong parcel, tracking, the delivery address"),
    ("technical", "the product or app: errors, crashes, slowness, sync, how a feature works"),
    ("other", "anything else: feedback, praise, ideas for new features, jobs, questions about the company"),
)
PRIORITIES: tuple[tuple[Priority, str], ...] = (
    ("urgent", "the customer cannot use the service at all, or threatens legal action or a chargeback"),
    ("low", "the ticket only asks a question or gives feedback or an idea; nothing is wrong"),
    ("normal", "everything else"),
)
CATEGORY_RULE = (
    "Decide by the problems the customer reports; if nothing is wrong, by what they ask about. Background"
    " mentions (how they paid, that they ordered, that they signed in) and threats do not count."
)
TONE_RULE = "Tone does not change the priority: anger, capitals and exclamation marks alone are not urgent."

CATEGORY_NAMES: tuple[Category, ...] = tuple(c for c, _ in CATEGORIES)
PRIORITY_NAMES: tuple[Priority, ...] = ("low", "normal", "urgent")


@dataclass(frozen=True, slots=True)
class Clue:
    """One thing a ticket says that the rules read; `text` is where it is said, verbatim in the ticket."""

    kind: Kind
    topic: Category | None  # None for topic-free sentences (a generic blocker, a threat)
    text: str


def category(clues: Iterable[Clue]) -> Category:
    """The first category in precedence order among the problems; without problems, among the questions."""
    clues = list(clues)
    for kinds in (("problem", "blocker"), ("question",)):
        topics = {c.topic for c in clues if c.kind in kinds and c.topic is not None}
        for name in CATEGORY_NAMES:
            if name in topics:
                return name
    return "other"


def priority(clues: Iterable[Clue]) -> Priority:
    """urgent on a blocker or a threat; low when nothing is wrong; normal otherwise."""
    kinds = {c.kind for c in clues}
    if kinds & {"blocker", "threat"}:
        return "urgent"
    if not kinds & {"problem"}:
        return "low"
    return "normal"
