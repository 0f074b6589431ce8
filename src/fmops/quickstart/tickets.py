"""Seeded support tickets with their true triage labels: `generate(n, seed, split=...) -> [Ticket]`.

A ticket is built from clues (fmops.quickstart.rules.Clue): a main problem or question, sometimes a second
topic, a background mention, a blocker or a threat, wrapped in openings, fillers and closings that carry
personal data (names, e-mails, phone numbers, street addresses, order numbers). Its label is computed from
its clues by the rules the prompt states, so a model that learns the rules gets it right and one that
keys on words does not (a charge mentioned as background is not a billing ticket; a threat of a
chargeback does not make a delivery a billing matter; shouting is not urgency).

The same seed gives the same tickets. `split="eval"` draws only from the held-out phrasings
(fmops.quickstart.phrases.held_out), `split="train"` only from the others: an eval set shares no phrasing
with a training set, only vocabulary, so decontamination has near-duplicates to catch only if a team
mixes splits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fmops.quickstart import phrases as ph
from fmops.quickstart.rules import Category, Clue, Kind, Priority, category, priority

Split = Literal["train", "eval"]
_SLOT = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"\b[a-z]{5,}\b")
_TOPICS: tuple[Category, ...] = ("billing", "account", "shipping", "technical", "other")
_KINDS: dict[Kind, int] = {"question": 3, "problem": 5, "blocker": 2}  # weights of the main clue's kind


@dataclass(frozen=True, slots=True)
class Ticket:
    text: str
    category: Category
    priority: Priority
    clues: tuple[Clue, ...]  # what the label was read from, each verbatim in `text`

    def label(self) -> dict[str, str]:
        return {"category": self.category, "priority": self.priority}


def generate(n: int, seed: int, *, split: Split = "train") -> list[Ticket]:
    """`n` tickets, the same for the same seed and split."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    rng = random.Random(f"fmops-tickets:{split}:{seed}")  # noqa: S311 - seeded data, not crypto
    return [_Writer(rng, split).ticket() for _ in range(n)]


class _Writer:
    """Writes one ticket at a time: a person (name, e-mail, phone), a style, and the clues."""

    def __init__(self, rng: random.Random, split: Split) -> None:
        self.rng = rng
        self.split = split

    def pick(self, pool: Sequence[str]) -> str:
        mine = [p for i, p in enumerate(pool) if ph.held_out(i) == (self.split == "eval")]
        return self.rng.choice(mine or list(pool))

    # --- the person and the fillers ----------------------------------------------------------------

    def _person(self) -> None:
        r = self.rng
        self.first = r.choice(ph.FIRST_NAMES)
        self.last = r.choice(ph.LAST_NAMES)
        plain = re.sub(r"[^a-z]", "", self.last.lower())
        local = r.choice(
            (
                f"{self.first.lower()}.{plain}",
                f"{self.first[0].lower()}{plain}",
                f"{self.first.lower()}{r.randrange(10, 99)}",
            )
        )
        self.email = f"{local}@{r.choice(ph.DOMAINS)}"
        self.phone = self._fill(r.choice(ph.PHONE_FORMATS))
        self.order = r.choice(("#{n}", "A-{n}", "{n}", "ORD-{n}")).format(n=r.randrange(100_000, 99_999_999))

    def _value(self, slot: str) -> str:
        r = self.rng
        match slot:
            case "d2" | "d3" | "d4":
                width = int(slot[1])
                return str(r.randrange(10 ** (width - 1), 10**width))
            case "first":
                return self.first
            case "fullname":
                return f"{self.first} {self.last}"
            case "email":
                return self.email
            case "phone":
                return self.phone
            case "order":
                return self.order
            case "amount":
                value = r.choice((r.randrange(5, 300), r.randrange(500, 30_000) / 100))
                money = f"{value:.2f}" if isinstance(value, float) else str(value)
                return r.choice((f"€{money}", f"${money}", f"£{money}", f"{money} euros"))
            case "code":
                return r.choice(("E", "ERR-", "")) + str(r.randrange(100, 999))
            case "street":
                return f"{r.randrange(1, 250)} {r.choice(ph.STREETS)}"
            case "weekday":
                return r.choice(ph.WEEKDAYS)
            case "month":
                return r.choice(ph.MONTHS)
            case "year":
                return str(r.randrange(2016, 2025))
        return self._fill(r.choice(ph.SLOTS[slot]))

    def _fill(self, template: str) -> str:
        return _SLOT.sub(lambda m: self._value(m.group(1)), template)

    # --- clues and sentences -----------------------------------------------------------------------

    def _typos(self, text: str, rate: float) -> str:
        """Swap, drop or double a letter in some lower-case words (never in names, numbers or e-mails)."""

        def one(m: re.Match[str]) -> str:
            w = m.group()
            if self.rng.random() >= rate:
                return w
            i = self.rng.randrange(1, len(w) - 2)
            how = self.rng.randrange(3)
            if how == 0:
                return w[:i] + w[i + 1] + w[i] + w[i + 2 :]
            if how == 1:
                return w[:i] + w[i + 1 :]
            return w[:i] + w[i] + w[i:]

        return _WORD.sub(one, text)

    def _sentence(self, text: str, end: str) -> str:
        text = self._typos(text, self.typo_rate)
        if self.style == "casual":
            return text.lower() + self.rng.choice(("", ".", ".", " :(", "..."))
        if self.style == "angry" and self.rng.random() < 0.3:
            text = text.upper()
        return text[:1].upper() + text[1:] + end

    def _clue(self, kind: Kind, topic: Category, join: str = "") -> Clue:
        body = self._fill(self.pick(ph.POOLS[kind][topic]))
        end = "?" if kind == "question" and not body.startswith(("I just", "it would", "your")) else "."
        if self.style == "angry" and kind in ("problem", "blocker"):
            end = self.rng.choice(("!", "!!", "!!!"))
        if join:
            body = join + body
        return Clue(kind, topic, self._sentence(body, end))

    def _topic_free(self, kind: Kind, pool: Sequence[str]) -> Clue:
        text = self._typos(self._fill(self.pick(pool)), self.typo_rate)
        return Clue(kind, None, text.lower() if self.style == "casual" else text)

    def ticket(self) -> Ticket:
        r = self.rng
        self._person()
        self.style = r.choices(("formal", "neutral", "casual", "angry"), weights=(2, 4, 3, 2))[0]
        self.typo_rate = {"casual": 0.12, "angry": 0.06}.get(self.style, 0.02)

        topic = r.choices(_TOPICS, weights=(10, 10, 11, 11, 8))[0]
        kinds = [k for k in _KINDS if topic in ph.POOLS[k]]
        main_kind = r.choices(kinds, weights=[_KINDS[k] for k in kinds])[0]
        body = [self._clue(main_kind, topic)]
        if main_kind == "problem" and topic != "shipping" and r.random() < 0.25:
            body.append(self._topic_free("blocker", ph.GENERIC_BLOCKERS))
        if main_kind != "question" and r.random() < 0.2:
            body.append(self._topic_free("threat", ph.THREATS))
        if r.random() < (0.1 if topic == "other" else 0.3):  # a second topic, asked or reported
            second: Kind = r.choice(("question", "problem"))
            others = [t for t in _TOPICS if t != topic and t in ph.POOLS[second]]
            body.append(self._clue(second, r.choice(others), r.choice(ph.JOINS_SECOND)))
        if r.random() < 0.3:  # a background mention of another topic, before the main clue
            others = [t for t in ph.POOLS["context"] if t != topic]
            body.insert(0, self._clue("context", r.choice(others), r.choice(ph.JOINS_CONTEXT)))

        length = r.choices(("line", "short", "long"), weights=(2, 4, 4))[0]
        parts: list[str] = []
        if length != "line":
            parts.append(self._fill(self.pick(ph.OPENINGS)))
        if self.style == "angry" and main_kind != "question" and r.random() < 0.6:
            body.insert(r.randrange(len(body) + 1), Clue("context", None, self.pick(ph.ANGRY)))
        if length == "long":
            for _ in range(r.randrange(1, 4)):
                body.insert(
                    r.randrange(len(body) + 1), Clue("context", None, self._fill(self.pick(ph.FILLERS)))
                )
        if r.random() < 0.4:
            body.append(Clue("context", None, self._fill(self.pick(ph.CONTACTS))))
        parts.append(" ".join(c.text for c in body))
        if length != "line" or r.random() < 0.3:
            parts.append(self._fill(self.pick(ph.CLOSINGS)))
        sep = r.choice(("\n\n", "\n", " ")) if length == "long" else r.choice(("\n", " "))
        text = sep.join(parts)

        clues = tuple(c for c in body if c.topic is not None or c.kind != "context")
        return Ticket(text, category(clues), priority(clues), clues)
