"""`fmops data` through the console script's `main()`: imports of every format and shape (with
the detection shown), list/show/head/diff/export, and bad input refused with one line that says
what to fix, leaving nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datasets
from support.cli_runs import Outcome, run_session, session_env


def _jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


CHAT = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}], "id": i}
    for i in range(6)
]
FILES: dict[str, str | bytes] = {
    "chat.jsonl": _jsonl(CHAT),
    "chat-v2.jsonl": _jsonl([*CHAT[2:], {"messages": [{"role": "user", "content": "new"}]}]),
    "sharegpt.jsonl": _jsonl(
        [
            {
                "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
                "system": "be kind",
            }
        ]
    ),
    "alpaca.csv": "instruction,input,output,source\nTranslate,bonjour,hello,fr\nSay hi,,hi,\n",
    "pref.jsonl": _jsonl(
        [
            {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
            {"prompt": "sky?", "chosen": "blue", "rejected": "red"},
        ]
    ),
    "eval.jsonl": _jsonl([{"input": "capital of France?", "expected": "Paris", "tag": "geo"}]),
    "mixed.jsonl": _jsonl(CHAT[:2])
    + '{"messages": []}\nnot json\n'
    + _jsonl(CHAT[2:3])
    + '{"prompt": "x"}\n',
    "latin1.jsonl": _jsonl(CHAT[:1]).encode() + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n',
    "latin1.csv": b"prompt,completion\nok,fine\ncaf\xe9,x\n",
    "array.json": json.dumps(CHAT),
    "unknown.jsonl": _jsonl([{"text": "just text"}]),
    "data.xlsx": b"PK\x03\x04",
    "empty.jsonl": "\n\n",
}

COMMANDS: dict[str, list[str]] = {
    "chat": ["data", "import", "chat.jsonl", "--name", "support"],
    "chat-again": ["data", "import", "chat.jsonl", "--name", "support"],
    "chat-v2": ["data", "import", "chat-v2.jsonl", "--name", "support"],
    "sharegpt": ["data", "import", "sharegpt.jsonl", "--name", "sg"],
    "alpaca": ["data", "import", "alpaca.csv", "--name", "alpaca"],
    "alpaca-completion": ["data", "import", "alpaca.csv", "--name", "alpaca-c", "--kind", "completion"],
    "pc-parquet": ["data", "import", "pc.parquet", "--name", "pc"],
    "pref": ["data", "import", "pref.jsonl", "--name", "pref"],
    "eval": ["data", "import", "eval.jsonl", "--name", "qa"],
    "chat-as-eval": ["data", "import", "chat.jsonl", "--name", "chat-eval", "--kind", "eval"],
    "hf": ["data", "import", "hfdict", "--name", "hf"],
    "skip": ["data", "import", "mixed.jsonl", "--name", "mixed", "--on-error", "skip"],
    "list": ["data", "list", "--json"],
    "show": ["data", "show", "support"],
    "show-json": ["data", "show", "support@1", "--json"],
    "versions": ["data", "versions", "support", "--json"],
    "head": ["data", "head", "support@1", "-n", "2"],
    "head-search": ["data", "head", "support", "--search", "Q4"],
    "diff": ["data", "diff", "support@1", "support@2", "--json"],
    "export-jsonl": ["data", "export", "support@1", "--format", "jsonl", "--out", "out.jsonl"],
    "export-pref": ["data", "export", "pref", "--out", "pref-out.jsonl"],
    "export-parquet": ["data", "export", "sg", "--format", "parquet", "--out", "sg.parquet"],
    "export-hf": ["data", "export", "support", "--format", "hf", "--out", "support-hf"],
    "export-exists": ["data", "export", "support", "--out", "out.jsonl"],
    "delete": ["data", "delete", "alpaca-c", "--yes"],
    # Mistakes
    "fail": ["data", "import", "mixed.jsonl", "--name", "mixed2"],
    "latin1": ["data", "import", "latin1.jsonl", "--name", "l1"],
    "latin1-csv": ["data", "import", "latin1.csv", "--name", "l1c"],
    "array": ["data", "import", "array.json", "--name", "arr"],
    "unknown-shape": ["data", "import", "unknown.jsonl", "--name", "u"],
    "unknown-format": ["data", "import", "data.xlsx", "--name", "x"],
    "empty": ["data", "import", "empty.jsonl", "--name", "e"],
    "traversal": ["data", "import", "chat.jsonl", "--name", "../../etc"],
    "odd-name": ["data", "import", "chat.jsonl", "--name", "a b"],
    "bad-kind": ["data", "import", "chat.jsonl", "--name", "k", "--kind", "poem"],
    "no-convert": ["data", "import", "pref.jsonl", "--name", "k", "--kind", "chat"],
    "other-kind": ["data", "import", "pref.jsonl", "--name", "support"],
    "no-file": ["data", "import", "missing.jsonl", "--name", "m"],
    "unknown-dataset": ["data", "show", "nope"],
    "unknown-version": ["data", "show", "support@9"],
    "bad-export-format": ["data", "export", "support", "--format", "xml", "--out", "x.xml"],
    "list-after": ["data", "list", "--json"],
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-data")
    for name, content in FILES.items():
        path = home / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    pq.write_table(pa.table({"prompt": ["2+2=", "3+3="], "completion": ["4", "6"]}), home / "pc.parquet")
    splits = {
        split: datasets.Dataset.from_list(
            [
                {
                    "messages": [
                        {"role": "user", "content": f"{split} {i}"},
                        {"role": "assistant", "content": "ok"},
                    ]
                }
                for i in range(n)
            ]
        )
        for split, n in (("train", 3), ("test", 1))
    }
    datasets.DatasetDict(splits).save_to_disk(str(home / "hfdict"))
    return home


@pytest.fixture(scope="module")
def results(home: Path) -> dict[str, Outcome]:
    outcomes = run_session(session_env(home, 120), list(COMMANDS.values()), cwd=home)
    return dict(zip(COMMANDS, outcomes, strict=True))


def _id(outcome: Outcome) -> str:
    [line] = outcome.ok().splitlines()
    assert len(line) == 32
    return line


def test_imports_detect_and_normalise_each_shape(results: dict[str, Outcome]) -> None:
    first = _id(results["chat"])
    assert "detected format jsonl, shape openai -> chat records" in results["chat"].stderr
    assert _id(results["chat-again"]) == first  # the same file again: no new version
    assert "unchanged" in results["chat-again"].stderr
    assert "support@2: new version 2" in results["chat-v2"].stderr
    for case, detection in [
        ("sharegpt", "format jsonl, shape sharegpt -> chat"),
        ("alpaca", "format csv, shape alpaca -> chat"),
        ("alpaca-completion", "format csv, shape alpaca -> completion"),
        ("pc-parquet", "format parquet, shape prompt_completion -> completion"),
        ("pref", "format jsonl, shape preference -> preference"),
        ("eval", "format jsonl, shape eval -> eval"),
        ("chat-as-eval", "format jsonl, shape openai -> eval"),
        ("hf", "format hf, shape openai -> chat"),
    ]:
        _id(results[case])
        assert detection in results[case].stderr, results[case]
    listed = {d["name"]: d for d in json.loads(results["list"].ok())}
    assert {n: (d["kind"], d["rows"]) for n, d in listed.items()} == {
        "alpaca": ("chat", 2),
        "alpaca-c": ("completion", 2),
        "chat-eval": ("eval", 6),
        "hf": ("chat", 4),
        "mixed": ("chat", 3),
        "pc": ("completion", 2),
        "pref": ("preference", 2),
        "qa": ("eval", 1),
        "sg": ("chat", 1),
        "support": ("chat", 5),
    }


def test_show_versions_head_and_diff(results: dict[str, Outcome]) -> None:
    shown = results["show"].ok()
    for fragment in [
        "dataset support@2",
        "kind chat",
        "rows 5",
        '"file":"chat-v2.jsonl"',
        '"shape":"openai"',
    ]:
        assert fragment in shown
    data = json.loads(results["show-json"].ok())
    assert (data["ref"], data["rows"], data["source"]["format"]) == ("support@1", 6, "jsonl")
    assert data["counts"] == {"in": 6, "out": 6, "skipped": 0}
    assert [v["version"] for v in json.loads(results["versions"].ok())] == [2, 1]
    heads = [json.loads(line) for line in results["head"].ok().splitlines()]
    assert heads[1] == {"messages": CHAT[1]["messages"], "tools": None, "metadata": {"id": 1}}
    assert [m["content"] for m in heads[0]["messages"]] == ["q0", "a0"]
    assert [json.loads(x)["metadata"] for x in results["head-search"].ok().splitlines()] == [{"id": 4}]
    diff = json.loads(results["diff"].ok())
    assert (diff["added"], diff["removed"], diff["unchanged"]) == (1, 2, 4)
    assert diff["added_examples"][0]["messages"] == [{"role": "user", "content": "new"}]


def test_skip_keeps_the_good_rows_and_reports_the_bad(results: dict[str, Outcome]) -> None:
    stderr = results["skip"].stderr
    assert "skipped line 3: messages must be a non-empty list of messages" in stderr
    assert "skipped line 4: not valid JSON" in stderr
    assert "skipped line 6: missing required field 'messages'" in stderr
    assert "mixed@1: new version 1, 3 rows, 3 skipped" in stderr


def test_exports_in_the_shapes_fine_tuning_tools_read(results: dict[str, Outcome], home: Path) -> None:
    results["export-jsonl"].ok()
    lines = [json.loads(x) for x in (home / "out.jsonl").read_text().splitlines()]
    assert lines == [{"messages": r["messages"]} for r in CHAT]
    results["export-pref"].ok()
    pref = json.loads((home / "pref-out.jsonl").read_text().splitlines()[0])
    assert pref == {
        "prompt": [{"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    results["export-parquet"].ok()
    row = pq.read_table(home / "sg.parquet").to_pylist()[0]
    assert [(m["role"], m["content"]) for m in row["messages"]] == [
        ("system", "be kind"),
        ("user", "hi"),
        ("assistant", "hello"),
    ]
    results["export-hf"].ok()
    loaded = datasets.load_from_disk(str(home / "support-hf"))
    assert len(loaded) == 5
    assert loaded[0]["messages"][0]["content"] == "q2"
    assert "exists; pass --force" in results["export-exists"].error_line()
    assert "deleted alpaca-c" in results["delete"].ok()
    assert "alpaca-c" not in {d["name"] for d in json.loads(results["list-after"].ok())}


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("fail", ["3 bad row(s)", "line 3: messages must be", "line 4: not valid JSON", "--on-error skip"]),
        ("latin1", ["line 2: not valid UTF-8 (byte 47 of the line)"]),
        ("latin1-csv", ["latin1.csv is not valid UTF-8 at line 3 (byte 4)"]),
        ("array", ["is a JSON array, not JSON Lines"]),
        ("unknown-shape", ["cannot tell the records' shape from their fields (text)"]),
        ("unknown-format", ["cannot tell the format of data.xlsx", "--format"]),
        ("empty", ["empty.jsonl holds no records"]),
        ("traversal", ["invalid dataset name '../../etc'"]),
        ("odd-name", ["invalid dataset name 'a b'"]),
        ("bad-kind", ["unknown record kind 'poem'"]),
        ("no-convert", ["preference records, which do not convert to chat records"]),
        ("other-kind", ["dataset 'support' holds chat records, not preference"]),
        ("no-file", ["missing.jsonl is not a file"]),
        ("unknown-dataset", ["no dataset 'nope' in this project; datasets: alpaca"]),
        ("unknown-version", ["dataset 'support' has no version 9 (newest: 2)"]),
        ("bad-export-format", ["unknown export format 'xml'"]),
    ],
)
def test_mistakes_print_one_error_line(results: dict[str, Outcome], case: str, fragments: list[str]) -> None:
    line = results[case].error_line()
    for fragment in fragments:
        assert fragment in line


def test_refused_imports_leave_nothing_behind(results: dict[str, Outcome], home: Path) -> None:
    names = {d["name"] for d in json.loads(results["list-after"].ok())}
    assert not names & {"mixed2", "l1", "l1c", "arr", "u", "x", "e", "k", "m"}
    files = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 10  # one per version kept: 10 datasets, support twice, alpaca-c deleted
    assert not any(p.name.endswith(".partial") for p in files)
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []
