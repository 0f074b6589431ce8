"""Inter-annotator agreement: Cohen's kappa over the items two people both labelled.

kappa = (p_o - p_e) / (1 - p_e): observed agreement corrected for the agreement two people would
reach by chance given how often each uses each value. When several people labelled an item (overlap
above 2), each pair of them counts as one pair of ratings, so a queue has one kappa per field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Agreement:
    field: str
    pairs: int  # pairs of ratings compared
    observed: float | None  # share of pairs that agree
    kappa: float | None  # None with no pairs; 1.0 when both always used one and the same value


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[v] * second[v] for v in first.keys() | second.keys()) / (n * n)
    if expected >= 1.0:  # one value only, on both sides: agreement is total, and chance explains it
        return 1.0
    return (observed - expected) / (1.0 - expected)


def agreement(field: str, ratings_per_item: Iterable[Sequence[str]]) -> Agreement:
    """Kappa of one field; `ratings_per_item` holds, per item, the values its people gave (in order)."""
    pairs = [pair for ratings in ratings_per_item for pair in combinations(ratings, 2)]
    observed = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
    return Agreement(field=field, pairs=len(pairs), observed=observed, kappa=cohen_kappa(pairs))
