"""Dataset records as TRL rows: splits by metadata.split, wrong kinds and tiny datasets refused."""

from __future__ import annotations

import pytest

from fmops.errors import UserError
from fmops.finetune.config import Method
from fmops.finetune.data import split_records

CHAT = {
    "messages": [
        {"role": "system", "content": "Label tickets."},
        {"role": "user", "content": "refund please"},
        {"role": "assistant", "content": '{"category": "billing"}'},
    ],
    "metadata": {},
}


def test_chats_become_prompt_completion_rows_split_by_metadata() -> None:
    records = [
        CHAT,
        {**CHAT, "metadata": {"split": "train"}},
        {**CHAT, "metadata": {"split": "validation"}},
        {**CHAT, "metadata": {"split": "test"}},
        {"messages": [{"role": "user", "content": "no answer"}], "metadata": {}},
    ]
    splits = split_records(Method.sft, "chat", [records[:2], records[2:]])
    assert len(splits.train) == 2
    assert len(splits.validation) == 1
    assert splits.train[0]["prompt"] == CHAT["messages"][:2]
    assert splits.train[0]["completion"] == CHAT["messages"][2:]
    assert splits.skipped == {"does not end with an assistant answer": 1}


def test_preference_rows_for_dpo() -> None:
    pair = {
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
        "metadata": {},
    }
    splits = split_records(Method.dpo, "preference", [[pair, pair]])
    assert splits.train[0] == {k: pair[k] for k in ("prompt", "chosen", "rejected")}


def test_wrong_kind_for_the_method() -> None:
    with pytest.raises(UserError, match="trains on preference records") as caught:
        split_records(Method.dpo, "chat", [[CHAT, CHAT]])
    assert caught.value.param == "dataset"
    assert "--preference" in caught.value.message  # how to build pairs from feedback
    with pytest.raises(
        UserError, match="holds preference records; train on preference pairs with method dpo"
    ):
        split_records(Method.sft, "preference", [])
    with pytest.raises(
        UserError, match="trains on chat records, but this dataset holds eval records; choose a"
    ):
        split_records(Method.sft, "eval", [])


def test_empty_and_tiny_datasets() -> None:
    with pytest.raises(UserError, match="0 usable training records"):
        split_records(Method.sft, "chat", [])
    with pytest.raises(UserError, match="1 usable training records"):
        split_records(Method.sft, "chat", [[CHAT, {**CHAT, "metadata": {"split": "validation"}}]])
