"""The scorer plugin interface: what a case is, what a scorer returns, how its config is checked.

A scorer is a class registered under the `fmops.scorers` entry-point group. It declares a name, a
description, a pydantic config model (checked when a rule is created, so a bad config is a 400 that
names the field) and facts callers read instead of branching on names:

needs_model     it calls a model: it runs as a job, never on the server's request path
needs_expected  it compares the output with the case's `expected` (offline evaluation; a live trace
                has none, so online evaluators cannot use it)
aggregates      its run-level metric is not the mean of the per-case values (classification's
                macro-F1, corpus BLEU): the runner must call `aggregate` over all the cases' results
slow            it computes for milliseconds or more per case (a local encoder; its first call loads
                a model for seconds): call `score` in a worker thread, never on an event loop
needs_record    it reads what the finished call recorded (latency, cost): unknown on the request
                path, where an endpoint's guardrails run

`score(case)` judges one case: a live trace's root span for online evaluators, a dataset record for
offline evaluation. `aggregate(results)` turns every case's result of one target into an `Aggregate`;
the default is the mean of the decided values, so a runner can call it for every scorer (and on
bootstrap resamples of the results, for confidence intervals).

Exceptions a scorer may raise from `score`:

ScorerError           this case cannot be scored (e.g. the judge model refused it): recorded as an error
└── ScorerUnavailable a dependency is down or rate-limited: the case is retried later
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from fmops.errors import invalid_config

JSON = dict[str, Any]
# Sends an OpenAI chat-completions body through the gateway and returns the response body.
ChatFn = Callable[[JSON], JSON]
# Label of a result whose value is None because the scorer could not decide.
ERROR = "error"
PASS = "pass"
FAIL = "fail"


class ScorerError(Exception):
    """This case cannot be scored; the message says why and is kept as the score's comment."""


class ScorerUnavailable(ScorerError):
    """Transient: the model is rate-limited or down. The case should be tried again later."""


class ScorerConfig(BaseModel):
    """Base of every scorer's config: unknown keys are refused, so a typo is a 400, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=ScorerConfig)


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """One verdict. `value` is normalised to 0..1 (1 is best); None when the scorer could not decide,
    then `label` says why (e.g. "error", "timeout") and `comment` explains."""

    value: float | None
    label: str | None = None
    comment: str | None = None
    # Structured detail for the run's aggregate and the results table: per-field scores, the
    # predicted and expected class, BLEU's n-gram counts... JSON-serialisable, small.
    data: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError("a score value must be a finite number")
        if self.value is None and not self.label:
            raise ValueError("a result without a value needs a label saying why")

    @classmethod
    def passed(cls, ok: bool, comment: str | None = None) -> ScoreResult:
        return cls(1.0 if ok else 0.0, PASS if ok else FAIL, comment)

    @classmethod
    def undecided(cls, label: str, comment: str) -> ScoreResult:
        return cls(None, label, comment)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A scorer's verdict over every case of one target.

    `value` is the headline metric in 0..1 (what a suite's weight and threshold apply to; None when
    no case was decided), `metrics` every named number (e.g. accuracy, macro_f1, f1.<label>),
    `details` structured extras (e.g. the confusion matrix), `count` the cases decided and
    `undecided` those left out (their value was None: errors, timeouts, missing expected output).
    """

    value: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    count: int = 0
    undecided: int = 0


def mean_aggregate(results: Sequence[ScoreResult]) -> Aggregate:
    """The mean of the decided values: the run-level metric of a per-case scorer."""
    values = [r.value for r in results if r.value is not None]
    mean = math.fsum(values) / len(values) if values else None
    return Aggregate(
        value=mean,
        metrics={"mean": mean} if mean is not None else {},
        count=len(values),
        undecided=len(results) - len(values),
    )


@dataclass(frozen=True, slots=True)
class Case:
    """What is scored: the raw input and output, their text, and (offline) the expected output.

    `output` is the stored JSON (an assistant message for gateway spans), `output_text` the text a
    person would read; scorers of text use the latter.
    """

    input: Any
    output: Any
    input_text: str
    output_text: str
    expected: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # What the call recorded (a span's latency_ms and cost), for the latency and cost bounds.
    latency_ms: float | None = None
    cost: float | None = None

    @classmethod
    def of(
        cls,
        input: Any,
        output: Any,
        *,
        expected: Any = None,
        metadata: Mapping[str, Any] | None = None,
        latency_ms: float | None = None,
        cost: float | None = None,
    ) -> Case:
        return cls(
            input=input,
            output=output,
            input_text=input_text(input),
            output_text=text_of(output),
            expected=expected,
            metadata=dict(metadata or {}),
            latency_ms=latency_ms,
            cost=cost,
        )

    @classmethod
    def from_span(cls, span: Mapping[str, Any]) -> Case:
        meta = {k: span.get(k) for k in ("trace_id", "span_id", "model", "endpoint", "user", "session_id")}
        return cls.of(
            span.get("input"),
            span.get("output"),
            metadata=meta,
            latency_ms=_number(span.get("latency_ms")),
            cost=_number(span.get("cost")),
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Scorer(ABC, Generic[C]):
    """Subclass with a config model and `score`; register it under the `fmops.scorers` entry points."""

    name: ClassVar[str]
    description: ClassVar[str]
    config_model: ClassVar[type[ScorerConfig]]
    # True when scoring calls a model: it then runs in a durable job with `chat` set, never inline.
    needs_model: ClassVar[bool] = False
    # True when it compares with `case.expected`: offline evaluation only (a live trace has none).
    needs_expected: ClassVar[bool] = False
    # True when `aggregate` is more than the mean of the per-case values (see the module docstring).
    aggregates: ClassVar[bool] = False
    # True when `score` computes for milliseconds or more: call it in a thread, not on an event loop.
    slow: ClassVar[bool] = False
    # True when it reads the finished call's record (latency, cost): not known to a guardrail.
    needs_record: ClassVar[bool] = False

    def __init__(self, config: C, *, chat: ChatFn | None = None) -> None:
        self.config = config
        self.chat = chat

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any] | None) -> ScorerConfig:
        """The validated config; a UserError naming the first bad field (`config.<field>`) otherwise."""
        try:
            return cls.config_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            raise invalid_config(exc, f"scorer {cls.name!r}") from None

    @classmethod
    def config_schema(cls) -> JSON:
        return cls.config_model.model_json_schema(by_alias=True)

    def models_used(self) -> list[str]:
        """Gateway model aliases this scorer calls; each must exist in the rule's project."""
        return []

    @abstractmethod
    def score(self, case: Case) -> ScoreResult:
        """Judge one case. Cheap scorers must not block for long: they run beside the server."""

    def aggregate(self, results: Sequence[ScoreResult]) -> Aggregate:
        """The run-level verdict from every case's result (of one target); the mean by default."""
        return mean_aggregate(results)


# --- text of inputs and outputs ------------------------------------------------------------------


def text_of(value: Any) -> str:
    """The readable text of a message, content parts, a list of choices or a plain value."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (text_of(v) for v in value) if t)
    if isinstance(value, dict):
        if "content" in value or "role" in value:
            return text_of(value.get("content"))
        if value.get("type") == "text" and isinstance(value.get("text"), str):
            return str(value["text"])
        for key in ("text", "output", "answer", "value"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return orjson.dumps(value, default=str).decode()


def input_text(value: Any) -> str:
    """A conversation as `role: text` lines; other inputs as their text."""
    messages = value.get("messages") if isinstance(value, dict) else None
    if isinstance(messages, list):
        lines = []
        for message in messages:
            if isinstance(message, dict):
                lines.append(f"{message.get('role', 'user')}: {text_of(message.get('content'))}")
        return "\n".join(lines)
    return text_of(value)
