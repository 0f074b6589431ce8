"""Variant assignment: a stable hash of (endpoint, subject) over the weights, with no database and no
network: sticky per subject, independent across endpoints, and close to the weights over many."""

from __future__ import annotations

from collections import Counter

from fmops.auth import Principal, Role
from fmops.endpoints.plan import sticky_subject
from fmops.endpoints.resolver import Resolved, ServedVariant, bounds
from fmops.gateway.schemas import ChatCompletionRequest

PRINCIPAL = Principal("key-1", "u1", "ann", "p1", "default", Role.consumer)


def endpoint(name: str, weights: dict[str, float]) -> Resolved:
    variants = tuple(ServedVariant(n, w, None, "small", {}) for n, w in weights.items())
    return Resolved(
        name=name,
        variants=variants,
        sticky="user",
        guardrails=(),
        cache=None,
        fallbacks=(),
        has_variants=True,
        _bounds=bounds(list(weights.values())),
    )


def test_assignment_is_sticky_and_follows_the_weights() -> None:
    bot = endpoint("bot", {"a": 1, "b": 3})
    subjects = [f"user:{i}" for i in range(400)]
    first = [bot.choose(s).name for s in subjects]
    # The same subject always gets the same variant, also from a freshly resolved endpoint (another
    # replica, or after a restart).
    assert [endpoint("bot", {"a": 1, "b": 3}).choose(s).name for s in subjects] == first
    share_b = Counter(first)["b"] / len(subjects)
    assert 0.68 <= share_b <= 0.82, share_b  # 0.75 expected; binomial sd over 400 is 0.022

    # Another endpoint splits the same users independently of this one.
    other = [endpoint("other-bot", {"a": 1, "b": 3}).choose(s).name for s in subjects]
    assert other != first
    # A variant with weight 0 gets nobody; moving weight moves only the users it must.
    assert {endpoint("bot", {"a": 0, "b": 1}).choose(s).name for s in subjects} == {"b"}
    even = [endpoint("bot", {"a": 1, "b": 1}).choose(s).name for s in subjects]
    assert all(f == "b" for f, e in zip(first, even, strict=True) if e == "b")


def test_the_sticky_subject_falls_back_to_the_key() -> None:
    with_user = ChatCompletionRequest(model="bot", messages=[], user="u-42")
    anonymous = ChatCompletionRequest(model="bot", messages=[])
    assert sticky_subject("user", with_user, PRINCIPAL, "s-1") == "user:u-42"
    assert sticky_subject("user", anonymous, PRINCIPAL, "s-1") == "key:key-1"
    assert sticky_subject("session", with_user, PRINCIPAL, "s-1") == "session:s-1"
    assert sticky_subject("session", with_user, PRINCIPAL, None) == "key:key-1"
    assert sticky_subject("key", with_user, PRINCIPAL, "s-1") == "key:key-1"
