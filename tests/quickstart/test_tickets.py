"""The triage ticket generator: seeded, varied, full of PII, and labelled by the rules the prompt states."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

import pytest

from fmops.pii import PiiType, detect, redact
from fmops.quickstart import phrases
from fmops.quickstart.prompt import SYSTEM
from fmops.quickstart.rules import Clue
from fmops.quickstart.tickets import Ticket, generate


@cache
def tickets(n: int, seed: int, split: str = "train") -> tuple[Ticket, ...]:
    return tuple(generate(n, seed, split=split))  # type: ignore[arg-type]


def _precedence() -> list[str]:
    """The category order as the prompt states it: its numbered list."""
    return re.findall(r"^\d\. (\w+):", SYSTEM, re.MULTILINE)


def by_the_prompt(clues: list[tuple[str, str | None]]) -> dict[str, str]:
    """The label a careful reader of the prompt gives to these (kind, topic) clues; written from the
    prompt's words, not from fmops.quickstart.rules."""
    order = _precedence()
    problems = [t for k, t in clues if k in ("problem", "blocker") and t]
    questions = [t for k, t in clues if k == "question" and t]
    pool = problems or questions
    category = min(pool, key=order.index) if pool else "other"
    kinds = {k for k, _ in clues}
    if "blocker" in kinds or "threat" in kinds:
        priority = "urgent"
    elif "problem" not in kinds:
        priority = "low"
    else:
        priority = "normal"
    return {"category": category, "priority": priority}


def test_the_same_seed_gives_the_same_tickets() -> None:
    assert generate(60, seed=3) == generate(60, seed=3)
    assert generate(60, seed=3) != generate(60, seed=4)
    assert [t.text for t in generate(60, seed=3, split="eval")] != [t.text for t in generate(60, seed=3)]
    with pytest.raises(ValueError, match="split"):
        generate(1, seed=1, split="test")  # type: ignore[arg-type]


def test_every_label_is_present_in_a_sane_share() -> None:
    for split in ("train", "eval"):
        sample = tickets(500, 1, split)
        categories = Counter(t.category for t in sample)
        priorities = Counter(t.priority for t in sample)
        assert set(categories) == {"billing", "account", "shipping", "technical", "other"}
        assert set(priorities) == {"low", "normal", "urgent"}
        assert all(50 <= c <= 200 for c in categories.values()), categories
        assert all(75 <= c <= 300 for c in priorities.values()), priorities


def test_the_prompt_lists_the_categories_in_the_order_the_generator_follows() -> None:
    assert _precedence() == ["billing", "account", "shipping", "technical", "other"]
    assert all(f"- {p}:" in SYSTEM for p in ("urgent", "low", "normal"))


def test_labels_follow_the_stated_rules_from_the_clues() -> None:
    mixed = 0
    for t in tickets(500, 1) + tickets(500, 1, "eval"):
        assert all(c.text in t.text for c in t.clues), t
        assert t.label() == by_the_prompt([(c.kind, c.topic) for c in t.clues]), t
        mixed += len({c.topic for c in t.clues if c.topic}) > 1
    assert mixed > 200  # mixed-topic tickets, where precedence and background mentions decide


def _pattern(template: str) -> re.Pattern[str]:
    pieces = re.split(r"\{\w+\}", template.lower())
    return re.compile(".+?".join(re.escape(p) for p in pieces))


@cache
def _readers() -> list[tuple[re.Pattern[str], str, str | None]]:
    """Every phrasing the rules give a meaning to, as a pattern over a ticket's lower-cased text."""
    out: list[tuple[re.Pattern[str], str, str | None]] = []
    for kind, topics in phrases.POOLS.items():
        for topic, pool in topics.items():
            out += [(_pattern(p), kind, topic) for p in pool]
    out += [(_pattern(p), "blocker", None) for p in phrases.GENERIC_BLOCKERS]
    out += [(_pattern(p), "threat", None) for p in phrases.THREATS]
    return out


def test_the_label_can_be_read_from_the_text_alone() -> None:
    """Read the clues back from the words of the ticket (no metadata), apply the prompt's rules: the
    same label. Tickets whose typos hide a phrasing are not read."""
    read = 0
    sample = tickets(500, 2) + tickets(500, 2, "eval")
    for t in sample:
        text = t.text.lower()
        found = [(kind, topic) for pattern, kind, topic in _readers() if pattern.search(text)]
        if len(found) != len(t.clues):
            continue
        read += 1
        assert by_the_prompt(found) == t.label(), t
    assert read >= 0.6 * len(sample)


def test_background_mentions_and_tone_do_not_decide() -> None:
    sample = tickets(500, 1)
    background = [t for t in sample if any(c.kind == "context" for c in t.clues)]
    assert any(c.topic != t.category for t in background for c in t.clues if c.kind == "context")
    shouting = [t for t in sample if "!!" in t.text or re.search(r"\b[A-Z]{4,} [A-Z]{4,}\b", t.text)]
    assert Counter(t.priority for t in shouting).keys() >= {"normal", "urgent"}
    threats = [t for t in sample if any(c.kind == "threat" for c in t.clues)]
    assert threats
    assert all(t.priority == "urgent" for t in threats)
    assert {t.category for t in threats} >= {"shipping", "technical"}  # a chargeback threat is not billing


def _has(t: Ticket, kind: PiiType) -> bool:
    return any(f.type == kind for f in detect(t.text))


def test_tickets_carry_pii_that_fmops_detects_and_redacts() -> None:
    sample = tickets(500, 5)
    emails = sum(_has(t, PiiType.email) for t in sample)
    phones = sum(_has(t, PiiType.phone) for t in sample)
    either = sum(_has(t, PiiType.email) or _has(t, PiiType.phone) for t in sample)
    assert emails >= 150, emails
    assert phones >= 150, phones
    assert either >= 250, either  # most tickets give curation something to redact
    assert sum(_has(t, PiiType.address) for t in sample) >= 3
    phone_like = re.compile(r"\+?\(?\d[\d ()-]{8,}\d")
    for t in sample:
        clean = redact(t.text)
        assert "@" not in clean, t.text
        assert not phone_like.search(clean), t.text
    # Order numbers are identifiers, not phone numbers: they stay.
    assert sum(bool(re.search(r"\b(?:#|A-|ORD-)?\d{6,8}\b", redact(t.text))) for t in sample) >= 50


def test_tickets_are_varied() -> None:
    sample = tickets(1000, 7)
    texts = [t.text for t in sample]
    assert len(set(texts)) >= 0.99 * len(texts)
    first = {re.split(r"(?<=[.?!])\s|\n", t.text.strip())[0].lower() for t in sample}
    assert len(first) >= 300, len(first)
    lengths = sorted(len(t) for t in texts)
    assert lengths[50] < 80  # a line ...
    assert lengths[-50] > 250  # ... to a paragraph
    assert lengths[-1] > 350
    assert {"\n" in t for t in texts} == {True, False}


def _grams(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_eval_phrasings_are_not_train_phrasings() -> None:
    def main(t: Ticket) -> Clue:
        return next(c for c in t.clues if c.kind in ("problem", "blocker", "question"))

    train = tickets(1000, 7)
    evals = tickets(300, 7, "eval")
    seen = set().union(*(_grams(main(t).text) for t in train))
    shared = sum(bool(_grams(main(t).text) & seen) for t in evals)
    assert shared <= 0.05 * len(evals), shared
