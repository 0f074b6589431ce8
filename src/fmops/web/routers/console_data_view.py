"""What the Data pages show, built from plain records: a record of any kind as chat bubbles or side-by-side
texts, a curation report read generically (reasons -> counts -> examples), and a version's source as a
line of lineage with a link to where it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson

from fmops.web.routers.console_traces_view import CHOICES, TEXT_FILTERS, pretty

MAX_TEXT = 4_000  # one message or field on the page; the export has it all
MAX_META = 200  # one metadata value in the facts line
MAX_EXAMPLES = 50  # per reason in a report (the curation report is capped near this itself)


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    cut: int = 0  # characters left out
    # The text split around a search's matches, (piece, is a match), when a search found it here.
    marks: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True, slots=True)
class Bubble:
    role: str
    text: Text


@dataclass(frozen=True, slots=True)
class Part:
    """One field of a record as the page shows it: chat messages as bubbles, anything else as text."""

    bubbles: list[Bubble] | None = None
    text: Text | None = None


@dataclass(frozen=True, slots=True)
class Shown:
    """A record laid out for its kind: `parts` are shown one under the other, `sides` next to each other."""

    kind: str
    parts: list[tuple[str, Part]] = field(default_factory=list)
    sides: list[tuple[str, Part]] = field(default_factory=list)
    metadata: list[tuple[str, str, str | None]] = field(default_factory=list)


def clip(text: str, limit: int = MAX_TEXT) -> Text:
    return Text(text[:limit], max(len(text) - limit, 0))


def _content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones as text, others as JSON
        return "\n".join(
            p["text"] if isinstance(p, dict) and isinstance(p.get("text"), str) else pretty(p)
            for p in content
        )
    return pretty(content)


def is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value)
    )


def part(value: Any) -> Part:
    if is_messages(value):
        bubbles = []
        for m in value:
            text = _content(m.get("content"))
            if m.get("tool_calls"):
                text = (text + "\n" if text else "") + pretty(m["tool_calls"])
            bubbles.append(Bubble(str(m["role"])[:40], clip(text)))
        return Part(bubbles=bubbles)
    if isinstance(value, dict) and is_messages(value.get("messages")):
        return part(value["messages"])
    if value is None:
        return Part(text=Text(""))
    return Part(text=clip(value if isinstance(value, str) else pretty(value)))


def _metadata(record: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(key, value, link): a record built from a trace links to it (lineage down to the call)."""
    meta = record.get("metadata")
    if not isinstance(meta, dict):
        return []
    shown = []
    for key, value in meta.items():
        text = clip(value if isinstance(value, str) else pretty(value), MAX_META).text
        link = f"/console/traces/{value}" if key in TRACE_KEYS and _trace_id(value) else None
        shown.append((str(key)[:80], text, link))
    return shown


TRACE_KEYS = ("trace_id", "trace")


def _trace_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isascii() and value.isalnum()


def show(kind: str, record: Any) -> Shown:
    """A record of `kind` (the contract's shapes) laid out for the page; anything unexpected as JSON."""
    if not isinstance(record, dict):
        return Shown(kind, parts=[("value", part(record))])
    meta = _metadata(record)
    if kind == "chat" and "messages" in record:
        parts = [("messages", part(record["messages"]))]
        if record.get("tools"):
            parts.append(("tools", Part(text=clip(pretty(record["tools"])))))
        return Shown(kind, parts=parts, metadata=meta)
    if kind == "completion" and "prompt" in record:
        return Shown(
            kind,
            sides=[("prompt", part(record["prompt"])), ("completion", part(record.get("completion")))],
            metadata=meta,
        )
    if kind == "preference" and "chosen" in record:
        parts = [("prompt", part(record.get("prompt")))]
        sides = [("chosen", part(record["chosen"])), ("rejected", part(record.get("rejected")))]
        return Shown(kind, parts=parts, sides=sides, metadata=meta)
    if kind == "eval" and "input" in record:
        return Shown(
            kind,
            sides=[("input", part(record["input"])), ("expected", part(record.get("expected")))],
            metadata=meta,
        )
    rest = {k: v for k, v in record.items() if k != "metadata"}
    return Shown(kind, parts=[("record", part(rest))], metadata=meta)


def _marked(text: Text, term: str) -> Text:
    """`text` with its case-insensitive matches of `term` marked (a search shows why a row matched)."""
    lowered, needle = text.text.lower(), term.lower()
    if not needle or len(lowered) != len(text.text) or needle not in lowered:  # lower() kept the offsets?
        return text
    pieces: list[tuple[str, bool]] = []
    start = 0
    while (found := lowered.find(needle, start)) >= 0:
        if found > start:
            pieces.append((text.text[start:found], False))
        pieces.append((text.text[found : found + len(needle)], True))
        start = found + len(needle)
    if start < len(text.text):
        pieces.append((text.text[start:], False))
    return Text(text.text, text.cut, tuple(pieces))


def _marked_part(value: Part, term: str) -> Part:
    if value.bubbles is not None:
        return Part(bubbles=[Bubble(b.role, _marked(b.text, term)) for b in value.bubbles])
    return Part(text=_marked(value.text, term)) if value.text is not None else value


def mark(shown: Shown, term: str | None) -> Shown:
    """The record with every match of a search term marked in its texts."""
    if not term:
        return shown
    return Shown(
        shown.kind,
        parts=[(label, _marked_part(p, term)) for label, p in shown.parts],
        sides=[(label, _marked_part(p, term)) for label, p in shown.sides],
        metadata=shown.metadata,
    )


# --- curation reports ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """Two records side by side: a near-duplicate and the one it duplicates, or a record before and after."""

    left_label: str
    left: Shown
    right_label: str
    right: Shown
    similarity: float | None = None
    note: str = ""


@dataclass
class Reason:
    name: str
    effect: str = "removed"  # or "changed" (a PII redaction keeps the record, changed)
    count: int | None = None
    pairs: list[Pair] = field(default_factory=list)
    examples: list[tuple[str, Shown]] = field(default_factory=list)  # (note, record or text)


# An example with two sides, as (left key, right key, left label, right label), looked for in order:
# the curation steps write `kept_text`/`text` (dedup); records as kept/removed or before/after also show.
PAIR_KEYS = (
    ("kept_text", "text", "kept", "removed"),
    ("kept", "removed", "kept", "removed"),
    ("original", "duplicate", "original", "duplicate"),
    ("before", "after", "before", "after"),
    ("a", "b", "a", "b"),
)
VALUE_KEYS = ("text", "record", "example")  # the one side of an example that has one
SIMILARITY_KEYS = ("similarity", "jaccard", "score")
ROW_KEYS = ("row", "kept_row")  # row numbers from 0 in the step's input


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _plain(value: Any) -> str:
    """A value on one line: text as it is, a list of texts joined, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return orjson.dumps(value, default=str).decode()


def _note(item: Mapping[str, Any], used: set[str]) -> str:
    """What else an example says (matched PII types, shared n-grams, row numbers from 1), in one line."""
    said = []
    for key, value in item.items():
        if key in used or value in (None, "", [], {}):
            continue
        if key in ROW_KEYS and _int(value) is not None:
            said.append(f"{key.replace('_', ' ')} {int(value) + 1:,}")
        else:
            said.append(f"{key.replace('_', ' ')}: {_plain(value)}")
    return "; ".join(said)[:500]


def _example(kind: str, item: Any, reason: Reason) -> None:
    if isinstance(item, dict):
        for left, right, left_label, right_label in PAIR_KEYS:
            if left in item and right in item:
                key = next((k for k in SIMILARITY_KEYS if k in item), None)
                reason.pairs.append(
                    Pair(
                        left_label,
                        show(kind, item[left]),
                        right_label,
                        show(kind, item[right]),
                        _number(item[key]) if key else None,
                        _note(item, {left, right, *SIMILARITY_KEYS}),
                    )
                )
                return
        for key in VALUE_KEYS:
            if key in item:
                reason.examples.append((_note(item, {key}), show(kind, item[key])))
                return
    reason.examples.append(("", show(kind, item)))


REPORT_KEYS = {"step", "in", "out", "removed", "modified", "examples"}


def read_report(
    kind: str, report: Mapping[str, Any] | None, counts: Mapping[str, Any]
) -> tuple[list[Reason], dict[str, Any]]:
    """A curation report as reasons (each with its count and examples) and the step's other figures.

    The curation steps write `{"step", "in", "out", "removed": {reason: n}, "modified": {reason: n},
    "examples": {reason: [...]}, ...details}`. It is read generically, so a step added later (a
    plugin's filter) shows without a change here: a reason is any key of removed, modified or examples;
    an example with two sides (kept/removed text, before/after) is shown as a pair, else as one record.
    """
    report = dict(report or {})
    effects: dict[str, tuple[str, int | None]] = {}
    for effect, key in (("removed", "removed"), ("changed", "modified")):
        for source in (counts.get(key), report.get(key)):
            if isinstance(source, dict):
                for name, value in source.items():
                    effects.setdefault(str(name), (effect, _int(value)))
    listed = report.get("examples")
    examples: dict[str, Any] = {str(k): v for k, v in listed.items()} if isinstance(listed, dict) else {}
    reasons = []
    for name in dict.fromkeys([*effects, *examples]):
        effect, count = effects.get(name, ("removed", None))
        reason = Reason(name=name, effect=effect, count=count)
        found = examples.get(name)
        for item in found[:MAX_EXAMPLES] if isinstance(found, list) else []:
            _example(kind, item, reason)
        reasons.append(reason)
    details = {k: v for k, v in report.items() if k not in REPORT_KEYS}
    return reasons, details


# --- lineage ------------------------------------------------------------------------------------

# The traces explorer's URL filters; a trace filter of a dataset version links to the same view.
EXPLORER_FILTERS = {*TEXT_FILTERS, *CHOICES, "prompt_version"}
FILTER_ALIASES = {"session": "session_id", "prompt": "prompt_name", "text": "q", "search": "q"}


@dataclass(frozen=True, slots=True)
class Source:
    type: str
    title: str
    facts: list[tuple[str, str]]
    link: str | None = None
    link_text: str = ""
    not_in_link: list[str] = field(default_factory=list)  # filters the explorer's URL cannot carry
    job: Any = None  # a curation version's job row, when it is still in the jobs table


def traces_link(filters: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The traces explorer showing what a trace-built version read: its URL, and the filters the URL
    cannot carry (a time window, a score), which the page names. One trace links to its own page."""
    trace = filters.get("trace_id")
    if isinstance(trace, str) and trace.isalnum():
        return f"/console/traces/{trace}", [k for k in filters if k != "trace_id"]
    params: dict[str, str] = {}
    left_out = []
    for key, value in filters.items():
        if value in (None, "", [], {}) or key == "root_only":
            continue
        name = FILTER_ALIASES.get(key, key)
        if name in EXPLORER_FILTERS and isinstance(value, str | int) and not isinstance(value, bool):
            params[name] = str(value)
        elif name == "tags" and isinstance(value, list) and all(isinstance(t, str) for t in value):
            params[name] = ",".join(value)  # the explorer's Tags field: comma-separated
        else:
            left_out.append(key)
    if not filters.get("root_only"):
        params["spans"] = "all"  # the explorer lists top-level spans unless told otherwise
    return "/console/traces?" + urlencode(params), left_out


def _facts(source: Mapping[str, Any], skip: set[str]) -> list[tuple[str, str]]:
    return [(str(k), clip(_plain(v), MAX_META).text) for k, v in source.items() if k not in skip]


def describe_source(source: Mapping[str, Any] | None, queue_path: str = "/console/annotation") -> Source:
    """Where a version came from, in words, with a link to what it came from where that has a page."""
    source = dict(source or {})
    kind = str(source.get("type") or "unknown")
    if kind == "import":
        return Source(kind, "Imported file", _facts(source, {"type"}))
    if kind == "traces":
        found = source.get("filter")
        filters: dict[str, Any] = found if isinstance(found, dict) else {}
        link, left_out = traces_link(filters)
        facts = [("filter", _plain(filters) if filters else "all traces")]
        facts += _facts(source, {"type", "filter"})
        return Source(kind, "Traces", facts, link, "Open these traces in the explorer", left_out)
    if kind == "annotation":
        queue = str(source.get("queue_id") or "")
        queue_link = f"{queue_path}/{queue}" if queue.isalnum() else None
        return Source(
            kind,
            "Annotation queue",
            _facts(source, {"type"}),
            queue_link,
            "Open the queue" if queue_link else "",
        )
    if kind == "curation":
        return Source(kind, "Curation job", _facts(source, {"type"}))
    if kind == "inference":  # batch inference: each answer's call is a trace tagged with the job
        job = str(source.get("job_id") or "")
        calls = traces_link({"tags": [f"job:{job}"]})[0] if job.isalnum() else None
        return Source(
            kind, "Batch inference", _facts(source, {"type"}), calls, "Open its calls in the trace explorer"
        )
    return Source(
        kind, kind.capitalize() if kind != "unknown" else "Unknown source", _facts(source, {"type"})
    )


def finetune_mentions(params: Any, names: set[str]) -> bool:
    """Whether a job's params name a dataset version (its id or `name@version`) anywhere inside them."""
    pending = [params]
    while pending:
        value = pending.pop()
        if isinstance(value, str) and value in names:
            return True
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def step_name(step: Mapping[str, Any] | None) -> str:
    """A recipe step as one line: `dedup (method=minhash, threshold=0.8)`."""
    if not step:
        return ""
    if isinstance(step.get("name"), str):
        name, options = step["name"], step.get("options") or {k: v for k, v in step.items() if k != "name"}
    elif len(step) == 1:
        name, options = next(iter(step.items()))
    else:
        return _plain(dict(step))[:200]
    if isinstance(options, dict) and options:
        inner = ", ".join(f"{k}={_plain(v)}" for k, v in options.items() if v is not None)
        return f"{name} ({inner})"[:200]
    return str(name)[:200]


def counts_text(counts: Mapping[str, Any] | None) -> str:
    """`1,000 in → 930 out; removed: near_duplicate 70`, from a version's counts."""
    if not counts:
        return ""
    said = []
    if _int(counts.get("in")) is not None and _int(counts.get("out")) is not None:
        said.append(f"{counts['in']:,} in → {counts['out']:,} out")
    for key, value in counts.items():
        if key in ("in", "out"):
            continue
        if isinstance(value, dict):
            if not value:
                continue
            inner = ", ".join(
                f"{k} {v:,}" if _int(v) is not None else f"{k} {_plain(v)}" for k, v in value.items()
            )
            said.append(f"{key}: {inner}")
        else:
            said.append(f"{key} {value:,}" if _int(value) is not None else f"{key} {_plain(value)}")
    return "; ".join(said)[:300]


def source_title(source: Mapping[str, Any] | None) -> str:
    return describe_source(source).title
