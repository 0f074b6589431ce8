"""The sampling extras of OpenAI-compatible local servers, as the local engines read them."""

from __future__ import annotations

import pytest

from fmops.providers.base import ProviderError
from fmops.providers.chat_format import ChatRequest, parse_chat_request

MESSAGES = [{"role": "user", "content": "hi"}]


def parse(defaults: dict[str, object] | None = None, **body: object) -> ChatRequest:
    return parse_chat_request({"model": "m", "messages": MESSAGES, **body}, provider="p", defaults=defaults)


def test_either_name_of_the_repetition_penalty_is_read() -> None:
    assert parse(repetition_penalty=1.3).repeat_penalty == 1.3
    assert parse(repeat_penalty=1.2).repeat_penalty == 1.2
    # The request's value wins over the model's recommended one, under either name.
    assert parse({"repeat_penalty": 1.1}, repetition_penalty=1.4).repeat_penalty == 1.4
    assert parse(repetition_penalty=1.3, repeat_penalty=1.3).repeat_penalty == 1.3


def test_two_different_penalties_are_a_400_naming_them() -> None:
    with pytest.raises(ProviderError) as caught:
        parse(repetition_penalty=1.3, repeat_penalty=1.1)
    assert (caught.value.status, caught.value.body) == (400, {"param": "repetition_penalty"})
    assert "two names for one setting" in caught.value.message


def test_top_k_minus_one_means_every_token_and_given_lists_what_was_set() -> None:
    request = parse({"temperature": 0.2}, top_k=-1, min_p=0.1)
    assert request.top_k == 0
    assert request.given == {"temperature", "top_k", "min_p"}
    assert parse().given == frozenset()
    with pytest.raises(ProviderError) as caught:
        parse(top_k=-2)
    assert caught.value.body == {"param": "top_k"}
