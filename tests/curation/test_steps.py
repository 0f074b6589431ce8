"""Each built-in curation step on small in-memory inputs: what it keeps, changes and reports."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from fmops.curation import steps
from fmops.curation.base import Source
from fmops.datasets.records import RecordKind
from fmops.errors import UserError
from support.curation_data import chat, edited, prose, run_step, source_of


def users(records: list[dict[str, Any]]) -> list[str]:
    return [r["messages"][0]["content"] for r in records]


# --- dedup ---------------------------------------------------------------------------------------


def test_exact_dedup_keeps_the_first_of_each_normalised_text() -> None:
    records = [chat("Hello, World!"), chat("other"), chat("hello   world"), chat("HELLO WORLD."), chat("x")]
    out, report, progress = run_step("dedup", {"method": "exact"}, records)
    assert users(out) == ["Hello, World!", "other", "x"]
    assert report.counts() == {"in": 5, "out": 3, "removed": {"duplicate": 2}, "modified": {}}
    pairs = report.examples["duplicate"]
    assert [(p["row"], p["kept_row"]) for p in pairs] == [(2, 0), (3, 0)]
    assert pairs[0]["kept_text"].startswith("Hello, World!")
    assert progress[-1] == 10  # two passes over five records


def test_minhash_dedup_removes_planted_near_duplicates_only() -> None:
    rng = random.Random(7)
    originals = [prose(rng, 80) for _ in range(60)]
    records = [chat(" ".join(t)) for t in originals]
    near = [chat(" ".join(edited(rng, originals[i], 1))) for i in range(0, 60, 3)]  # J ~ 0.89
    far = [chat(" ".join(edited(rng, originals[i], 25))) for i in range(1, 60, 3)]  # J well under 0.5
    mixed = records + near + far
    rng.shuffle(near)
    out, report, _ = run_step("dedup", {"method": "minhash", "threshold": 0.7}, mixed, batch=17)
    assert len(out) == len(mixed) - len(near)
    assert {orjson.dumps(r) for r in out} == {orjson.dumps(r) for r in records + far}
    assert report.removed == Counter({"near_duplicate": len(near)})
    pair = report.examples["near_duplicate"][0]
    assert pair["kept_row"] < pair["row"]
    assert 0.7 <= pair["similarity"] < 1
    assert report.details["lsh"]["bands"] * report.details["lsh"]["rows"] <= 128


def test_minhash_options_are_checked() -> None:
    dedup = steps()["dedup"]
    with pytest.raises(ValidationError, match="threshold apply to method minhash only"):
        dedup.Options.model_validate({"method": "exact", "threshold": 0.5})
    with pytest.raises(ValidationError, match=r"bands x rows \(160\) exceeds num_perm \(128\)"):
        dedup.Options.model_validate({"method": "minhash", "bands": 16, "rows": 10})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        dedup.Options.model_validate({"method": "minhash", "shingles": 5})
    options = dedup.Options.model_validate({"method": "minhash", "bands": 16})
    assert options.lsh() == (16, 8)


# --- pii -----------------------------------------------------------------------------------------


PII_RECORDS = [
    chat("Mail me at ada@example.com please", "Card 4111 1111 1111 1111 noted."),
    chat("Nothing personal here", "Fine."),
    chat("Call +44 20 7946 0958", "ok"),
]


def test_pii_redact_rewrites_every_turn_and_reports_without_the_values() -> None:
    out, report, _ = run_step("pii", {"action": "redact"}, PII_RECORDS)
    assert out[0]["messages"] == [
        {"role": "user", "content": "Mail me at [EMAIL] please"},
        {"role": "assistant", "content": "Card [CREDIT_CARD] noted."},
    ]
    assert out[1] == PII_RECORDS[1]
    assert report.modified == Counter({"redact": 2})
    assert report.details["records_with"] == {"email": 1, "credit_card": 1, "phone": 1}
    dumped = orjson.dumps(report.to_dict()).decode()
    assert "ada@example.com" not in dumped
    assert "4111" not in dumped


def test_pii_mask_types_and_drop() -> None:
    out, _, _ = run_step("pii", {"action": "mask", "types": ["phone"]}, PII_RECORDS)
    assert out[0] == PII_RECORDS[0]  # only phones are looked for
    assert out[2]["messages"][0]["content"] == "Call +** ** **** ****"
    out, report, _ = run_step("pii", {"action": "drop"}, PII_RECORDS)
    assert out == [PII_RECORDS[1]]
    assert report.removed == Counter({"pii": 2})
    assert report.examples["pii"][0]["types"] == ["credit_card", "email"]


def test_pii_unknown_type_is_an_option_error() -> None:
    with pytest.raises(ValidationError, match="unknown PII type"):
        steps()["pii"].Options.model_validate({"types": ["ssn"]})


def test_pii_rewrites_completion_preference_and_eval_records() -> None:
    email = "bob@example.org"
    completion = {"prompt": f"to {email}", "completion": "ok", "metadata": {}}
    out, _, _ = run_step("pii", {}, [completion], kind=RecordKind.completion)
    assert out[0]["prompt"] == "to [EMAIL]"
    turn = [{"role": "user", "content": email}]
    pref = {"prompt": turn, "chosen": turn, "rejected": turn, "metadata": {}}
    out, _, _ = run_step("pii", {}, [pref], kind=RecordKind.preference)
    assert all(out[0][f][0]["content"] == "[EMAIL]" for f in ("prompt", "chosen", "rejected"))
    case = {"input": email, "expected": {"to": email, "n": 1}, "metadata": {"owner": email}}
    out, _, _ = run_step("pii", {}, [case], kind=RecordKind.eval)
    assert out[0] == {"input": "[EMAIL]", "expected": {"to": "[EMAIL]", "n": 1}, "metadata": {"owner": email}}


# --- filter --------------------------------------------------------------------------------------


def test_filter_reasons() -> None:
    records = [
        chat("hi", "ok"),  # too short
        chat("What is the capital of France?", "Paris is the capital of France."),
        chat("Tell me a joke " * 3, "I'm sorry, but I can't help with that."),
        chat("Say something", ""),  # empty answer
        chat("spam " + "buy now " * 40, "ok"),  # repetitive
        chat("numbers", "1234 5678 9999 0000 #### $$$$ 42 42 42 42"),  # non-text
        {"messages": [{"role": "user", "content": "no answer at all here"}], "tools": None, "metadata": {}},
    ]
    options = {
        "min_chars": 10,
        "max_chars": 1000,
        "max_repetition": 0.5,
        "max_non_text_ratio": 0.5,
        "drop_refusals": True,
        "drop_empty_answers": True,
    }
    out, report, _ = run_step("filter", options, records)
    assert users(out) == ["What is the capital of France?"]
    assert report.removed == Counter(
        {"too_short": 1, "refusal": 1, "empty_answer": 2, "repetitive": 1, "non_text": 1}
    )
    assert report.examples["refusal"][0]["text"].endswith("I'm sorry, but I can't help with that.")


def test_filter_language_offline() -> None:
    records = [
        chat("Where is the nearest train station?", "It is two streets away, next to the bakery."),
        chat("Wo ist der nächste Bahnhof?", "Er ist zwei Straßen entfernt, neben der Bäckerei."),
    ]
    out, report, _ = run_step("filter", {"language": ["en"]}, records)
    assert users(out) == ["Where is the nearest train station?"]
    assert report.removed == Counter({"language": 1})
    with pytest.raises(ValidationError, match="unknown language code"):
        steps()["filter"].Options.model_validate({"language": ["english"]})
    with pytest.raises(ValidationError, match="min_chars is greater than max_chars"):
        steps()["filter"].Options.model_validate({"min_chars": 10, "max_chars": 5})


# --- decontaminate -------------------------------------------------------------------------------


def test_decontaminate_drops_records_sharing_an_ngram_with_the_eval_set() -> None:
    evals = [{"input": "What is the boiling point of water at sea level in Celsius?", "expected": "100"}]
    asked: list[str] = []

    def open_dataset(ref: str) -> tuple[RecordKind, Source]:
        asked.append(ref)
        return RecordKind.eval, source_of([{**e, "metadata": {}} for e in evals])

    records = [
        chat("Quiz: what is the boiling point of water at sea level in celsius? Answer briefly."),
        chat("What is the boiling point of water on Mount Everest?"),  # shares only 6 words in a row
        chat("Tell me about Paris."),
    ]
    out, report, _ = run_step(
        "decontaminate", {"against": "quiz-eval", "ngram": 8}, records, open_dataset=open_dataset
    )
    assert asked == ["quiz-eval"]
    assert users(out) == [records[1]["messages"][0]["content"], "Tell me about Paris."]
    assert report.removed == Counter({"eval_overlap": 1})
    assert report.examples["eval_overlap"][0]["shared_ngrams"] >= 1
    assert steps()["decontaminate"](steps()["decontaminate"].Options(against="x")).datasets() == ["x"]


# --- split ---------------------------------------------------------------------------------------


def test_split_sizes_are_exact_and_seeded() -> None:
    records = [chat(f"question {i}") for i in range(200)]
    out, report, _ = run_step("split", {"validation": 0.1, "test": 0.05, "seed": 3}, records, batch=7)
    splits = Counter(r["metadata"]["split"] for r in out)
    assert splits == Counter({"train": 170, "validation": 20, "test": 10})
    assert report.details["splits"] == {"train": 170, "validation": 20, "test": 10}
    again, _, _ = run_step("split", {"validation": 0.1, "test": 0.05, "seed": 3}, records, batch=50)
    assert again == out  # the seed, not the batch size, decides
    other, _, _ = run_step("split", {"validation": 0.1, "test": 0.05, "seed": 4}, records)
    assert other != out


def test_split_stratified_by_a_metadata_field() -> None:
    records = [chat(f"q{i}", label="rare" if i % 10 == 0 else "common") for i in range(100)]
    out, report, _ = run_step("split", {"validation": 0.2, "stratify": "label"}, records)
    by = Counter((r["metadata"]["label"], r["metadata"]["split"]) for r in out)
    assert by == Counter(
        {
            ("common", "train"): 72,
            ("common", "validation"): 18,
            ("rare", "train"): 8,
            ("rare", "validation"): 2,
        }
    )
    assert report.details["strata"]["rare"] == {"train": 8, "validation": 2}
    dotted, _, _ = run_step("split", {"validation": 0.2, "stratify": "metadata.label"}, records)
    assert dotted == out


def test_split_refuses_shares_that_leave_no_training_data() -> None:
    with pytest.raises(ValidationError, match="must leave some records for training"):
        steps()["split"].Options.model_validate({"validation": 0.6, "test": 0.4})


def test_split_refuses_a_field_with_too_many_values() -> None:
    from fmops.curation.steps import split

    records = [chat(f"q{i}", uid=str(i)) for i in range(split.MAX_STRATA + 1)]
    with pytest.raises(UserError, match="stratify by 'uid' gives over 10,000 groups"):
        run_step("split", {"stratify": "uid"}, records, batch=5000)


# --- system ----------------------------------------------------------------------------------------


def test_system_sets_replaces_or_drops_the_system_message() -> None:
    long_rules = {"role": "system", "content": "Many rules. " * 50}
    records = [
        {"messages": [long_rules, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
        {"messages": [{"role": "system", "content": "Triage."}, {"role": "user", "content": "e"}]},
    ]
    out, report, _ = run_step("system", {"content": "Triage."}, records)
    assert [m["messages"][0] for m in out] == [{"role": "system", "content": "Triage."}] * 3
    assert [[m["content"] for m in r["messages"][1:]] for r in out] == [["a", "b"], ["c", "d"], ["e"]]
    assert report.counts() == {"in": 3, "out": 3, "removed": {}, "modified": {"system": 2}}
    dropped, report, _ = run_step("system", {"content": None}, records)
    assert [[m["role"] for m in r["messages"]] for r in dropped] == [["user", "assistant"]] * 2 + [["user"]]
    assert report.modified == Counter({"system": 2})


def test_system_sets_a_preference_prompt_and_refuses_other_kinds() -> None:
    pair = {
        "prompt": [{"role": "system", "content": "old"}, {"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "yes"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    }
    out, _, _ = run_step("system", {"content": "new"}, [pair], kind=RecordKind.preference)
    assert out[0]["prompt"][0] == {"role": "system", "content": "new"}
    assert out[0]["chosen"] == pair["chosen"]
    with pytest.raises(UserError, match="completion records have no system message"):
        run_step("system", {"content": "x"}, [{"prompt": "p", "completion": "c"}], kind=RecordKind.completion)
    with pytest.raises(ValidationError, match="content"):
        steps()["system"].Options.model_validate({})
