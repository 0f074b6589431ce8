"""The hand-written triage tickets: forty rows with labels the rules allow, every category and priority
covered, and none worded like what the generator writes for the quickstart's seeds (so they measure the
rules a model learnt, not the phrasings it saw in training)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from fmops.quickstart import CATEGORY_NAMES, PRIORITY_NAMES, generate
from fmops.quickstart.handwritten import DEFAULT_PATH, HandwrittenTicket, load
from fmops.quickstart.tickets import Split

GRAM = 8  # words: a shared 8-gram is a copied phrase, not shared vocabulary


def normalised(text: str) -> str:
    """Lower case, accents and punctuation gone, words single-spaced."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return " ".join(re.findall(r"[a-z0-9]+", plain))


def grams(text: str) -> set[tuple[str, ...]]:
    words = normalised(text).split()
    return {tuple(words[i : i + GRAM]) for i in range(len(words) - GRAM + 1)}


@cache
def handwritten() -> tuple[HandwrittenTicket, ...]:
    return tuple(load())


@cache
def generated() -> tuple[str, ...]:
    """What the quickstart's seeds produce: 2,000 tickets at seeds 0-3 of both splits, normalised."""
    splits: tuple[Split, ...] = ("train", "eval")
    return tuple(
        normalised(t.text) for split in splits for seed in range(4) for t in generate(2000, seed, split=split)
    )


def test_forty_rows_with_unique_ids_texts_and_allowed_labels() -> None:
    rows = handwritten()
    assert len(rows) == 40
    assert [r.id for r in rows] == [f"hw-{i:02d}" for i in range(1, 41)]
    assert len({normalised(r.text) for r in rows}) == 40
    for r in rows:
        assert r.category in CATEGORY_NAMES, r
        assert r.priority in PRIORITY_NAMES, r
        assert r.text.strip(), r
        assert r.why.strip(), r
        assert r.label() == {"category": r.category, "priority": r.priority}


def test_every_category_and_priority_is_covered() -> None:
    categories = Counter(r.category for r in handwritten())
    priorities = Counter(r.priority for r in handwritten())
    assert set(categories) == set(CATEGORY_NAMES)
    assert min(categories.values()) >= 5, categories
    assert set(priorities) == set(PRIORITY_NAMES)
    assert min(priorities.values()) >= 8, priorities


def test_no_ticket_is_worded_like_a_generated_one() -> None:
    corpus = generated()
    assert len(corpus) == 16_000
    seen = set().union(*(grams(text) for text in corpus))
    for r in handwritten():
        mine = f" {normalised(r.text)} "
        # Short tickets have no 8-gram: they must not appear whole inside a generated ticket either.
        assert not any(mine in f" {text} " for text in corpus), r.id
        shared = grams(r.text) & seen
        assert not shared, (r.id, sorted(" ".join(g) for g in shared)[:3])


def test_the_default_path_is_the_repository_file() -> None:
    here = Path(__file__).resolve().parents[1] / "data" / "triage_handwritten.jsonl"
    assert here == DEFAULT_PATH
    assert load(DEFAULT_PATH) == list(handwritten())


def test_a_missing_file_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load(missing)


def test_a_label_outside_the_rules_is_refused(tmp_path: Path) -> None:
    row = {"id": "x-1", "text": "where is my parcel", "category": "delivery", "priority": "low", "why": "-"}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: label 'delivery'/'low'"):
        load(path)
