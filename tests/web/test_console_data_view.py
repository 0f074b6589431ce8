"""What the Data pages make of records, curation reports and sources, without a server: a report of any
of the shapes a step may write is read as reasons with counts and examples; a trace-built version links
to the explorer filtered the same way; fine-tune jobs are found by the version they name."""

from __future__ import annotations

from fmops.web.routers.console_data_view import (
    Bubble,
    Part,
    Text,
    counts_text,
    describe_source,
    finetune_mentions,
    mark,
    read_report,
    show,
    step_name,
    traces_link,
)

CHAT = {
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    "tools": None,
    "metadata": {"split": "train"},
}


def test_records_are_laid_out_for_their_kind() -> None:
    chat = show("chat", CHAT)
    assert [label for label, _ in chat.parts] == ["messages"]
    bubbles = chat.parts[0][1].bubbles
    assert bubbles is not None
    assert [(b.role, b.text.text) for b in bubbles] == [("user", "Hi"), ("assistant", "Hello!")]
    assert chat.metadata == [("split", "train", None)]
    traced = show("chat", {**CHAT, "metadata": {"trace_id": "ab12", "span_id": "cd"}})
    assert traced.metadata == [("trace_id", "ab12", "/console/traces/ab12"), ("span_id", "cd", None)]
    odd_trace = show("chat", {**CHAT, "metadata": {"trace_id": "../x"}})
    assert odd_trace.metadata == [("trace_id", "../x", None)]

    preference = show(
        "preference",
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
            "metadata": {},
        },
    )
    assert [label for label, _ in preference.sides] == ["chosen", "rejected"]
    assert preference.sides[1][1].bubbles is not None
    assert preference.sides[1][1].bubbles[0].text.text == "5"

    case = show("eval", {"input": "capital of France?", "expected": {"answer": "Paris"}, "metadata": {}})
    assert case.sides[0] == ("input", Part(text=Text("capital of France?")))
    expected = case.sides[1][1].text
    assert expected is not None
    assert '"answer": "Paris"' in expected.text

    completion = show("completion", {"prompt": "p", "completion": "c", "metadata": {}})
    assert [(label, p.text.text if p.text else None) for label, p in completion.sides] == [
        ("prompt", "p"),
        ("completion", "c"),
    ]
    long = show("completion", {"prompt": "x" * 5000, "completion": "", "metadata": {}})
    assert long.sides[0][1].text == Text("x" * 4000, cut=1000)
    odd = show("chat", {"something": "else"})  # not the kind's shape: shown as JSON, not dropped
    as_json = odd.parts[0][1].text
    assert as_json is not None
    assert "something" in as_json.text


def test_a_curation_report_is_read_as_reasons_counts_and_examples() -> None:
    """The shape the curation steps write (fmops.curation.base.StepReport.to_dict)."""
    counts = {"in": 10, "out": 6, "removed": {"near_duplicate": 3, "too_short": 1}, "modified": {"redact": 2}}
    report = {
        "step": "dedup",
        **counts,
        "examples": {
            "near_duplicate": [
                {
                    "row": 4,
                    "kept_row": 1,
                    "text": "Where is my parcel?",
                    "kept_text": "Where is my parcel",
                    "similarity": 0.91,
                }
            ],
            "too_short": [{"text": "ok"}],
            "redact": [{"text": "mail [EMAIL]", "types": ["email"]}],
        },
        "lsh": {"bands": 16, "rows": 8},
        "clusters": 7,
    }
    reasons, details = read_report("chat", report, counts)
    by_name = {r.name: r for r in reasons}
    assert list(by_name) == ["near_duplicate", "too_short", "redact"]
    dup = by_name["near_duplicate"]
    assert (dup.effect, dup.count, len(dup.pairs)) == ("removed", 3, 1)
    pair = dup.pairs[0]
    assert (pair.left_label, pair.right_label, pair.similarity, pair.note) == (
        "kept",
        "removed",
        0.91,
        "row 5; kept row 2",
    )
    assert pair.left.parts[0][1].text == Text("Where is my parcel")
    assert pair.right.parts[0][1].text == Text("Where is my parcel?")
    assert by_name["too_short"].examples[0][1].parts[0][1].text == Text("ok")
    redact = by_name["redact"]
    assert (redact.effect, redact.count, redact.examples[0][0]) == ("changed", 2, "types: email")
    assert details == {"lsh": {"bands": 16, "rows": 8}, "clusters": 7}

    # A reason only counted, and records (not texts) as the two sides of a pair.
    other = {"examples": {"exact": [{"kept": CHAT, "removed": CHAT, "jaccard": 1}]}}
    reasons, details = read_report("chat", other, {"removed": {"exact": 1, "pii": 2}})
    assert [(r.name, r.count) for r in reasons] == [("exact", 1), ("pii", 2)]
    assert reasons[0].pairs[0].similarity == 1.0
    assert reasons[0].pairs[0].left.parts[0][0] == "messages"
    assert (reasons[1].pairs, reasons[1].examples, details) == ([], [], {})
    assert read_report("chat", None, {}) == ([], {})


def test_sources_describe_where_a_version_came_from() -> None:
    link, left_out = traces_link(
        {"model": "talker", "prompt": "support", "feedback": "positive", "min_score": 0.8, "tags": []}
    )
    assert link == "/console/traces?model=talker&prompt_name=support&feedback=positive&spans=all"
    assert left_out == ["min_score"]
    link, left_out = traces_link({"start": "2026-01-01T00:00:00+00:00", "root_only": True, "status": "ok"})
    assert (link, left_out) == ("/console/traces?status=ok", ["start"])
    assert traces_link({"trace_id": "ab12", "model": "m"}) == ("/console/traces/ab12", ["model"])
    traces = describe_source({"type": "traces", "filter": {"endpoint": "help"}, "trace_ids": 12})
    assert (traces.title, traces.link) == ("Traces", "/console/traces?endpoint=help&spans=all")
    assert ("trace_ids", "12") in traces.facts
    imported = describe_source({"type": "import", "file": "faq.jsonl", "format": "jsonl"})
    assert (imported.title, imported.link, imported.facts) == (
        "Imported file",
        None,
        [("file", "faq.jsonl"), ("format", "jsonl")],
    )
    queue = describe_source({"type": "annotation", "queue_id": "abc123"})
    assert queue.link == "/console/annotation/abc123"
    assert describe_source({"type": "annotation", "queue_id": "../x"}).link is None
    assert describe_source(None).title == "Unknown source"


def test_steps_counts_and_fine_tunes_in_words() -> None:
    assert (
        step_name({"dedup": {"method": "minhash", "threshold": 0.8}})
        == "dedup (method=minhash, threshold=0.8)"
    )
    assert step_name({"name": "split", "options": {"validation": 0.1}}) == "split (validation=0.1)"
    assert step_name({"pii": {}}) == "pii"
    assert step_name(None) == ""
    assert counts_text({"in": 1000, "out": 930, "removed": {"near_duplicate": 70}}) == (
        "1,000 in → 930 out; removed: near_duplicate 70"
    )
    names = {"v1id", "faq@1"}
    assert finetune_mentions({"training": {"dataset": "faq@1"}, "epochs": 1}, names)
    assert finetune_mentions({"datasets": ["other@2", "v1id"]}, names)
    assert not finetune_mentions({"dataset": "faq@10"}, names)


def test_a_search_term_is_marked_in_the_texts_it_matched() -> None:
    shown = mark(show("chat", CHAT), "HELLO")
    bubbles = shown.parts[0][1].bubbles
    assert bubbles is not None
    assert bubbles[0] == Bubble("user", Text("Hi"))  # no match: nothing marked
    assert bubbles[1].text.marks == (("Hello", True), ("!", False))
    case = mark(show("eval", {"input": "a cat and a Cat", "expected": None, "metadata": {}}), "cat")
    assert case.sides[0][1].text is not None
    assert case.sides[0][1].text.marks == (("a ", False), ("cat", True), (" and a ", False), ("Cat", True))
    assert mark(show("chat", CHAT), None) == show("chat", CHAT)
