"""Shapes and readers without a store: each shape normalised to each kind it converts to, CSV cells
holding JSON, TRL's implicit-prompt preference pairs, a saved single HF Dataset, records validated,
and the HF export naming its extra when `datasets` is missing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import datasets
from fmops.datasets.readers import detect_format, read_rows
from fmops.datasets.records import RecordKind, record_hash, record_text, validate_record
from fmops.datasets.shapes import Shape, check_conversion, detect_shape, normalise
from fmops.errors import UserError


def one(shape: Shape, kind: RecordKind, row: dict[str, Any]) -> dict[str, Any]:
    return validate_record(kind, normalise(shape, kind, row))


def test_each_shape_to_each_kind() -> None:
    alpaca = {"instruction": "Translate", "input": "bonjour", "output": "hello", "system": "be exact"}
    assert one(Shape.alpaca, RecordKind.chat, alpaca)["messages"] == [
        {"role": "system", "content": "be exact"},
        {"role": "user", "content": "Translate\n\nbonjour"},
        {"role": "assistant", "content": "hello"},
    ]
    assert one(Shape.alpaca, RecordKind.completion, alpaca) == {
        "prompt": "Translate\n\nbonjour",
        "completion": "hello",
        "metadata": {},
    }
    chat = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "id": 7}
    assert one(Shape.openai, RecordKind.eval, chat) == {
        "input": [{"role": "user", "content": "2+2?"}],
        "expected": "4",
        "metadata": {"id": 7},
    }
    sharegpt = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    assert one(Shape.sharegpt, RecordKind.chat, sharegpt)["messages"][1] == {
        "role": "assistant",
        "content": "yo",
    }
    pc = {
        "prompt": [{"role": "user", "content": "hi"}],
        "completion": [{"role": "assistant", "content": "yo"}],
    }
    assert len(one(Shape.prompt_completion, RecordKind.chat, pc)["messages"]) == 2
    with pytest.raises(UserError, match="do not convert to completion"):
        check_conversion(Shape.openai, RecordKind.completion)


def test_preference_pairs_with_strings_and_implicit_prompts() -> None:
    strings = one(
        Shape.preference, RecordKind.preference, {"prompt": "q", "chosen": "good", "rejected": "bad"}
    )
    assert strings["prompt"] == [{"role": "user", "content": "q"}]
    assert strings["chosen"] == [{"role": "assistant", "content": "good"}]
    user = {"role": "user", "content": "q"}
    implicit = {
        "chosen": [user, {"role": "assistant", "content": "good"}],
        "rejected": [user, {"role": "assistant", "content": "bad"}],
    }
    pair = one(Shape.preference, RecordKind.preference, implicit)
    assert (pair["prompt"], pair["rejected"]) == ([user], [{"role": "assistant", "content": "bad"}])
    with pytest.raises(ValueError, match="missing required field 'prompt'"):
        normalise(Shape.preference, RecordKind.preference, {"chosen": "a", "rejected": "b"})


def test_records_are_validated_and_hashed_by_content() -> None:
    record = {"messages": [{"role": "user", "content": "x"}], "metadata": {"b": 1, "a": 2}}
    same = {"metadata": {"a": 2, "b": 1}, "messages": [{"content": "x", "role": "user"}]}
    kind = RecordKind.chat
    assert record_hash(kind, validate_record(kind, record)) == record_hash(kind, validate_record(kind, same))
    assert record_text(kind, validate_record(kind, record)) == "x"
    for bad, reason in [
        ({"messages": [{"role": "robot", "content": "x"}]}, "role 'robot'"),
        ({"messages": [{"role": "user", "content": 3}]}, "content must be a string"),
        ({"messages": [{"role": "user", "content": "x", "mood": "sad"}]}, "unknown field 'mood'"),
        ({"messages": [], "metadata": {}}, "non-empty list"),
        ({"messages": [{"role": "user", "content": "x"}], "extra": 1}, "unknown field 'extra'"),
        ({"messages": [{"role": "user", "content": "x"}], "metadata": []}, "metadata must be an object"),
    ]:
        with pytest.raises(ValueError, match=reason):
            validate_record(kind, bad)


def test_csv_cells_holding_json_and_saved_single_datasets(tmp_path: Path) -> None:
    csv = tmp_path / "chat.csv"
    csv.write_text(
        'messages,metadata\n"[{""role"": ""user"", ""content"": ""hi""}]","{""split"": ""test""}"\n'
    )
    [row] = list(read_rows(csv, detect_format(csv)))
    assert row.value is not None
    shape = detect_shape(row.value)
    record = validate_record(RecordKind.chat, normalise(shape, RecordKind.chat, row.value, text_cells=True))
    assert record["metadata"] == {"split": "test"}

    saved = tmp_path / "saved"
    datasets.Dataset.from_list([{"input": "capital of France?", "expected": "Paris"}] * 3).save_to_disk(
        str(saved)
    )
    assert detect_format(saved) == "hf"
    rows = list(read_rows(saved, "hf"))
    assert [r.where for r in rows] == ["row 1", "row 2", "row 3"]
    assert detect_shape(rows[0].value or {}) is Shape.eval
    (saved / "state.json").write_text('{"_data_files": [{"filename": "../../etc/passwd"}]}')
    with pytest.raises(UserError, match="missing or outside file"):
        list(read_rows(saved, "hf"))


def test_a_parquet_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "x.parquet"
    fake.write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        list(read_rows(fake, "parquet"))


def test_hf_export_names_the_extra_when_datasets_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmops.datasets.export import write_hf

    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(UserError, match=r"pip install 'fmops\[hf\]'"):
        write_hf(None, None, tmp_path / "out")  # type: ignore[arg-type]
