"""An import's result is pinned: the same JSONL gives the same version hash, rows and bad-row report
whatever path a row takes through the reader (the fast columnar path for the common shapes, or the
row-by-row one for the odd rows). The hashes were taken from the row-by-row importer before the
columnar path existed; a change here changes every stored version's identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fmops.artifacts import ArtifactStore
from fmops.datasets.imports import import_file
from fmops.datasets.records import RecordKind
from fmops.datasets.service import DatasetService
from fmops.store import Store
from support.databases import migrated_sqlite_url


def _line(value: Any) -> bytes:
    return orjson.dumps(value) + b"\n"


def openai_lines() -> bytes:
    """Plain chat rows, mixed with the odd ones a columnar reader does not take whole."""
    out = []
    for i in range(120):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are Acme's assistant. ✓"},
            {"role": "user", "content": f'#{i} "quoted" \\ back\nslash \u2028 é 😀 {"x" * (i % 7)}'},
            {"role": "assistant", "content": f"answer {i}\t<b>&</b>"},
        ]
        row: dict[str, Any] = {"messages": messages, "source": "logs", "n": i, "score": i / 7}
        if i % 10 == 3:
            row["metadata"] = {"z": [1, 2.5, None], "a": {"nested": True}, "n": "meta wins"}
        if i % 10 == 4:
            row["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
            messages.append({"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]})
            messages.append({"role": "tool", "content": "42", "tool_call_id": "c1", "name": "f"})
        if i % 10 == 5:
            messages[1] = {"content": "keys in another order", "role": "user"}
        if i % 10 == 6:
            row["empty"] = None  # a None extra field is left out of metadata
        if i % 10 == 7:
            messages[2]["weight"] = 0
        out.append(_line(row))
        if i % 25 == 10:
            out.append(b"\n")  # blank lines are skipped, and still counted as lines
        if i % 30 == 11:
            out.append(b'{"messages": [{"role": "robot", "content": "x"}]}\n')
        if i % 30 == 12:
            out.append(b'{"messages": "not a list"}\n')
        if i % 40 == 13:
            out.append(b"{not json\n")
        if i % 40 == 14:
            out.append(b'{"messages": [{"role": "user", "content": "bad \xff utf8"}]}\n')
        if i % 40 == 15:
            out.append(b"[1, 2]\n")
        if i % 40 == 16:
            out.append(b'{"messages": [{"role": "user", "content": 5}]}\n')
        if i % 40 == 17:
            out.append(b'{"messages": [{"role": "user", "content": "x", "extra": 1}]}\n')
        if i % 40 == 18:
            out.append(b'{"messages": [], "metadata": 3}\n')
        if i % 40 == 19:
            out.append(b'{"messages": [{"role": "user", "content": "hi"}], "metadata": "no"}\n')
    return b"".join(out)


def sharegpt_lines() -> bytes:
    rows: list[dict[str, Any]] = [
        {"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}], "id": i}
        for i in range(40)
    ]
    rows[5]["system"] = "be brief"
    rows[7]["conversations"].append({"from": "alien", "value": "?"})
    return b"".join(_line(r) for r in rows)


def alpaca_lines() -> bytes:
    rows: list[dict[str, Any]] = [
        {"instruction": f"say {i}", "input": "" if i % 2 else f"ctx {i}", "output": f"{i}!"}
        for i in range(40)
    ]
    rows[3]["output"] = 3
    return b"".join(_line(r) for r in rows)


CHAT, SHAREGPT, ALPACA = openai_lines(), sharegpt_lines(), alpaca_lines()
# name -> (content, kind to import as: None to infer it); each file is imported as its own dataset.
FILES: dict[str, tuple[bytes, RecordKind | None]] = {
    "chat.jsonl": (CHAT, None),
    "chat-as-eval.jsonl": (CHAT, RecordKind.eval),
    "sharegpt.jsonl": (SHAREGPT, None),
    "alpaca.jsonl": (ALPACA, None),
    "alpaca-completion.jsonl": (ALPACA, RecordKind.completion),
}
# name -> (rows, content hash, problems), from the row-by-row importer.
PINNED: dict[str, tuple[int, str, list[str]]] = {
    "alpaca-completion.jsonl": (
        39,
        "92a5c0aef76692de89df13a65b5197feff88d1cb455627330efc789a48ba789a",
        ["line 4: output must be a string"],
    ),
    "alpaca.jsonl": (
        39,
        "7e580becc12a42d2181329d8a2610aea906d7e579d23d407da36f25f7faeab5e",
        ["line 4: output must be a string"],
    ),
    "chat-as-eval.jsonl": (
        108,
        "8e6fe6363e11a7f63595487c43fe1c5625ddbed31caae5d4695cd8f1c201d5ea",
        [
            "line 5: messages must end with the expected assistant turn",
            "line 14: messages must end with the expected assistant turn",
            "line 16: messages must end with the expected assistant turn",
            "line 18: not valid JSON (unexpected character, expected a string key)",
            "line 19: messages must end with the expected assistant turn",
            "line 20: not valid UTF-8 (byte 48 of the line)",
            "line 22: not a JSON object",
            "line 24: messages must end with the expected assistant turn",
            "line 26: messages must end with the expected assistant turn",
            "line 28: messages must end with the expected assistant turn",
            "line 30: messages must end with the expected assistant turn",
            "line 35: messages must end with the expected assistant turn",
            "line 45: messages must end with the expected assistant turn",
            "line 54: messages must end with the expected assistant turn",
            "line 56: messages must end with the expected assistant turn",
            "line 58: messages must end with the expected assistant turn",
            "line 68: not valid JSON (unexpected character, expected a string key)",
            "line 69: messages must end with the expected assistant turn",
            "line 70: not valid UTF-8 (byte 48 of the line)",
            "line 72: not a JSON object",
            "line 74: messages must end with the expected assistant turn",
            "line 76: messages must end with the expected assistant turn",
            "line 78: messages must end with the expected assistant turn",
            "line 80: messages must end with the expected assistant turn",
            "line 86: messages must end with the expected assistant turn",
            "line 94: messages must end with the expected assistant turn",
            "line 96: messages must end with the expected assistant turn",
            "line 98: messages must end with the expected assistant turn",
            "line 108: messages must end with the expected assistant turn",
            "line 119: not valid JSON (unexpected character, expected a string key)",
            "line 120: messages must end with the expected assistant turn",
            "line 121: not valid UTF-8 (byte 48 of the line)",
            "line 123: not a JSON object",
            "line 125: messages must end with the expected assistant turn",
            "line 127: messages must end with the expected assistant turn",
            "line 129: messages must end with the expected assistant turn",
            "line 131: messages must end with the expected assistant turn",
            "line 134: messages must end with the expected assistant turn",
            "line 136: messages must end with the expected assistant turn",
            "line 138: messages must end with the expected assistant turn",
            "line 149: messages must end with the expected assistant turn",
        ],
    ),
    "chat.jsonl": (
        120,
        "a7a9085fd4d1ddb951b6335bf6320e5838a8709c191acd9a6e95d58981bbda19",
        [
            "line 14: messages[0] has role 'robot'; use one of system, user, assistant, tool",
            "line 16: messages must be a non-empty list of messages",
            "line 18: not valid JSON (unexpected character, expected a string key)",
            "line 20: not valid UTF-8 (byte 48 of the line)",
            "line 22: not a JSON object",
            "line 24: messages[0] has no text content (content must be a string)",
            "line 26: messages[0] has unknown field 'extra'",
            "line 28: metadata must be an object",
            "line 30: metadata must be an object",
            "line 54: messages[0] has role 'robot'; use one of system, user, assistant, tool",
            "line 56: messages must be a non-empty list of messages",
            "line 68: not valid JSON (unexpected character, expected a string key)",
            "line 70: not valid UTF-8 (byte 48 of the line)",
            "line 72: not a JSON object",
            "line 74: messages[0] has no text content (content must be a string)",
            "line 76: messages[0] has unknown field 'extra'",
            "line 78: metadata must be an object",
            "line 80: metadata must be an object",
            "line 94: messages[0] has role 'robot'; use one of system, user, assistant, tool",
            "line 96: messages must be a non-empty list of messages",
            "line 119: not valid JSON (unexpected character, expected a string key)",
            "line 121: not valid UTF-8 (byte 48 of the line)",
            "line 123: not a JSON object",
            "line 125: messages[0] has no text content (content must be a string)",
            "line 127: messages[0] has unknown field 'extra'",
            "line 129: metadata must be an object",
            "line 131: metadata must be an object",
            "line 134: messages[0] has role 'robot'; use one of system, user, assistant, tool",
            "line 136: messages must be a non-empty list of messages",
        ],
    ),
    "sharegpt.jsonl": (
        39,
        "e97f76b026bca78fb536bbaad3bcf5134b5eb4803e4a31b4a5c10736b87e47ed",
        ["line 8: conversations[2] is from 'alien', which is not a known speaker"],
    ),
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatasetService]:
    """One migrated SQLite store for every file: a version's hash is its content's, whatever else
    the store holds."""
    folder = tmp_path_factory.mktemp("import-hashes")
    store = Store(migrated_sqlite_url(folder))
    yield DatasetService(store, ArtifactStore((folder / "artifacts").as_uri()))
    store.dispose()


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_same_file_gives_the_same_version(name: str, service: DatasetService, tmp_path: Path) -> None:
    content, kind = FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    dataset = name.removesuffix(".jsonl")
    result = import_file(service, project_id="p" * 32, path=path, name=dataset, kind=kind, on_error="skip")
    assert (result.version.rows, result.version.content_hash, result.problems) == PINNED[name]
