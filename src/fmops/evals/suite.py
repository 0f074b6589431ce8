"""An eval suite as written in YAML (in git) or sent over the API, checked field by field.

```yaml
name: triage
cases: {dataset: triage-eval@3}     # an eval dataset version (input, expected, metadata), or a list:
                                    # [{input: "text or messages", expected: ..., metadata: {...}}, ...]
targets:                            # what answers: a model, a prompt version on a model, an endpoint
  - {model: smollm2-135m-instruct, prompt: ticket-triage@production, parameters: {temperature: 0}}
  - {endpoint: triage, name: triage-endpoint}
scorers:                            # the `fmops.scorers` registry, by name
  - {name: json_schema, config: {schema: {type: object}}}
  - {name: exact_match, weight: 2, threshold: 0.8}
concurrency: 16                     # calls in flight at once (all cases x targets)
seed: 0                             # sent as `seed` to every call, and seeds the bootstrap
```

`parse_suite` checks the shape and collects every problem (an unknown field comes with "did you mean");
the service then checks what the suite names (dataset, models, prompts, endpoints, scorers) and
raises one `SuiteError` listing them all, before anything runs.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import yaml

from fmops.errors import UserError

SUITE_FIELDS = ("name", "description", "cases", "targets", "scorers", "concurrency", "seed", "pairwise")
PAIRWISE_FIELDS = ("a", "b", "config")
TARGET_FIELDS = ("name", "model", "prompt", "endpoint", "parameters")
SCORER_FIELDS = ("name", "config", "weight", "threshold")
CASE_FIELDS = ("input", "expected", "metadata")
MAX_CONCURRENCY = 256
MAX_INLINE_CASES = 10_000
DEFAULT_CONCURRENCY = 8
# libyaml's parser (the same safe constructors): a 200-case suite parses ~10x faster than in pure Python.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SuiteError(UserError):
    """Everything wrong with a suite, found before anything ran; `problems` lists them one by one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        head = f"the suite has {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(head + ": " + "; ".join(problems), param="suite")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' when a known name is close, else the known names (a few of them)."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if not names:
        return " (none exist)"
    listing = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f" (known: {listing})"


@dataclass(frozen=True)
class TargetSpec:
    name: str
    model: str | None = None
    prompt: str | None = None  # the prompt's name
    prompt_ref: str | None = None  # its label or version number ("production", "3"); None: newest
    endpoint: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "endpoint" if self.endpoint else ("prompt" if self.prompt else "model")


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    threshold: float | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    targets: list[TargetSpec]
    scorers: list[ScorerSpec]
    dataset: str | None = None  # NAME, NAME@VERSION or a version id
    cases: list[dict[str, Any]] | None = None  # inline cases
    description: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    seed: int = 0
    # {a: TARGET, b: TARGET, config: {model: JUDGE, ...}}: the judge_pairwise scorer compares the two
    # targets' answers case by case, after they are all in (both orders, for position bias).
    pairwise: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suite:
        """The inverse of `as_dict` (a stored run's definition), not user input: see `parse_suite`."""
        return cls(
            name=data["name"],
            targets=[TargetSpec(**t) for t in data["targets"]],
            scorers=[ScorerSpec(**s) for s in data["scorers"]],
            dataset=data.get("dataset"),
            cases=data.get("cases"),
            description=data.get("description"),
            concurrency=data.get("concurrency", DEFAULT_CONCURRENCY),
            seed=data.get("seed", 0),
            pairwise=data.get("pairwise"),
        )

    def content_hash(self) -> str:
        return hashlib.sha256(orjson.dumps(self.as_dict(), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _unknown(where: str, given: Mapping[str, Any], allowed: tuple[str, ...], problems: list[str]) -> None:
    for key in given:
        if key not in allowed:
            problems.append(f"{where}{key}: unknown field{did_you_mean(str(key), allowed)}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, limit: int = 200) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def read_suite(raw: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """The suite's mapping from YAML (or JSON) text; a SuiteError when it is not one."""
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        data = yaml.load(raw, Loader=_FAST_LOADER)  # noqa: S506 (a safe loader: plain data only)
    except yaml.YAMLError:
        # libyaml's message lacks the pure loader's excerpt of the line at fault: the pure loader
        # reads the text again, and its error (or, where only libyaml refused, its data) stands.
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise SuiteError([f"not valid YAML: {exc}".replace("\n", " ")]) from None
    if not isinstance(data, dict):
        raise SuiteError(["a suite is a mapping with name, cases, targets and scorers"])
    return data


def _targets(raw: Any, problems: list[str]) -> list[TargetSpec]:
    if not isinstance(raw, list) or not raw:
        problems.append("targets: a non-empty list of {model | prompt | endpoint, parameters}")
        return []
    targets: list[TargetSpec] = []
    for i, item in enumerate(raw):
        where = f"targets.{i}"
        if not isinstance(item, dict):
            problems.append(f"{where}: a mapping such as {{model: NAME}} or {{endpoint: NAME}}")
            continue
        count = len(problems)
        _unknown(f"{where}.", item, TARGET_FIELDS, problems)
        for key in ("name", "model", "prompt", "endpoint"):
            if key in item and not _text(item[key]):
                problems.append(f"{where}.{key}: a name (1-200 characters)")
        model, prompt, endpoint = item.get("model"), item.get("prompt"), item.get("endpoint")
        if endpoint is not None and (model is not None or prompt is not None):
            problems.append(f"{where}: an endpoint has its own model and prompt; give endpoint alone")
        if endpoint is None and model is None and prompt is None:
            problems.append(f"{where}: give model, prompt (NAME@LABEL) or endpoint")
        parameters = item.get("parameters", {})
        if not isinstance(parameters, dict):
            problems.append(f"{where}.parameters: a mapping of chat parameters")
            parameters = {}
        if len(problems) > count:
            continue
        prompt_name, prompt_ref = None, None
        if prompt is not None:
            prompt_name, _, ref = str(prompt).partition("@")
            prompt_ref = ref or None
        name = item.get("name") or _default_name(model, prompt, endpoint)
        targets.append(TargetSpec(name, model, prompt_name, prompt_ref, endpoint, dict(parameters)))
    seen: dict[str, int] = {}
    for i, target in enumerate(targets):
        if target.name in seen:
            problems.append(
                f"targets.{i}: the same name as targets.{seen[target.name]} ({target.name!r}); set name"
            )
        seen.setdefault(target.name, i)
    return targets


def _default_name(model: Any, prompt: Any, endpoint: Any) -> str:
    if endpoint is not None:
        return f"endpoint:{endpoint}"
    if prompt is not None:
        return f"{prompt}/{model}" if model is not None else str(prompt)
    return str(model)


def _scorers(raw: Any, problems: list[str]) -> list[ScorerSpec]:
    if not isinstance(raw, list) or not raw:
        problems.append("scorers: a non-empty list of {name, config, weight, threshold}")
        return []
    scorers: list[ScorerSpec] = []
    for i, item in enumerate(raw):
        where = f"scorers.{i}"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            problems.append(f"{where}: a mapping such as {{name: exact_match}}")
            continue
        count = len(problems)
        _unknown(f"{where}.", item, SCORER_FIELDS, problems)
        if not _text(item.get("name"), 100):
            problems.append(f"{where}.name: the scorer's name is required")
        config = item.get("config", {})
        if config is None:
            config = {}
        if not isinstance(config, dict):
            problems.append(f"{where}.config: a mapping")
        weight = item.get("weight", 1.0)
        if not _number(weight) or not 0 <= weight <= 1000:
            # 0: the scorer is reported, and left out of the case's score (and so of the paired tests)
            problems.append(f"{where}.weight: a number from 0 to 1000 (0: reported, not in the score)")
        threshold = item.get("threshold")
        if threshold is not None and (not _number(threshold) or not 0 <= threshold <= 1):
            problems.append(f"{where}.threshold: a number from 0 to 1 (the least mean score that passes)")
        if len(problems) == count:
            scorers.append(ScorerSpec(item["name"], dict(config), float(weight), threshold))
    if scorers and len(scorers) == len(raw) and not any(s.weight > 0 for s in scorers):
        problems.append(
            "scorers: give at least one a weight above 0; the case's score is their weighted mean"
        )
    names = [item.get("name") if isinstance(item, dict) else item for item in raw]
    for name in sorted({str(n) for n in names if names.count(n) > 1}):
        problems.append(f"scorers: {name!r} appears more than once; each scorer's results are keyed by name")
    return scorers


def _pairwise(raw: Any, targets: list[TargetSpec], problems: list[str]) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("pairwise: a mapping {a: TARGET, b: TARGET, config: {model: JUDGE}}")
        return None
    count = len(problems)
    _unknown("pairwise.", raw, PAIRWISE_FIELDS, problems)
    names = [t.name for t in targets]
    for side in ("a", "b"):
        name = raw.get(side)
        if not isinstance(name, str) or name not in names:
            problems.append(f"pairwise.{side}: a target's name{did_you_mean(str(name), names)}")
    if raw.get("a") is not None and raw.get("a") == raw.get("b"):
        problems.append("pairwise: a and b are the same target")
    if not isinstance(raw.get("config"), dict):
        problems.append("pairwise.config: the judge_pairwise scorer's config, at least {model: JUDGE}")
    if len(problems) > count:
        return None
    return {"a": raw["a"], "b": raw["b"], "config": dict(raw["config"])}


def _cases(raw: Any, problems: list[str]) -> tuple[str | None, list[dict[str, Any]] | None]:
    if isinstance(raw, dict):
        _unknown("cases.", raw, ("dataset",), problems)
        dataset = raw.get("dataset")
        if not _text(dataset, 210):
            problems.append("cases.dataset: a dataset NAME, NAME@VERSION or version id")
            return None, None
        return str(dataset), None
    if isinstance(raw, list):
        if not raw:
            problems.append("cases: the list is empty")
        if len(raw) > MAX_INLINE_CASES:
            problems.append(f"cases: {len(raw)} inline cases; at most {MAX_INLINE_CASES} (use a dataset)")
            return None, None
        cases = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                item = {"input": item}
            if not isinstance(item, dict):
                problems.append(f"cases.{i}: a mapping {{input, expected, metadata}}")
                continue
            _unknown(f"cases.{i}.", item, CASE_FIELDS, problems)
            if item.get("input") in (None, "", []):
                problems.append(f"cases.{i}.input: required (text or messages)")
            if not isinstance(item.get("metadata", {}), dict):
                problems.append(f"cases.{i}.metadata: a mapping")
            cases.append(
                {
                    "input": item.get("input"),
                    "expected": item.get("expected"),
                    "metadata": item.get("metadata") or {},
                }
            )
        return None, cases
    problems.append("cases: {dataset: NAME[@VERSION]} or a list of {input, expected}")
    return None, None


def parse_suite(raw: str | bytes | Mapping[str, Any]) -> tuple[Suite, list[str]]:
    """The suite and every problem with its shape (empty when none); references are checked later."""
    data = read_suite(raw)
    problems: list[str] = []
    _unknown("", data, SUITE_FIELDS, problems)
    name = data.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        problems.append("name: the suite's name is required (1-100 characters)")
        name = str(name or "")[:100]
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        problems.append("description: text")
        description = None
    concurrency = data.get("concurrency", DEFAULT_CONCURRENCY)
    if (
        not isinstance(concurrency, int)
        or isinstance(concurrency, bool)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        problems.append(f"concurrency: a whole number from 1 to {MAX_CONCURRENCY}")
        concurrency = DEFAULT_CONCURRENCY
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        problems.append("seed: a whole number from 0 to 2147483647")
        seed = 0
    dataset, cases = _cases(data.get("cases"), problems)
    targets = _targets(data.get("targets"), problems)
    pairwise = _pairwise(data.get("pairwise"), targets, problems)
    suite = Suite(
        name=name,
        targets=targets,
        scorers=_scorers(data.get("scorers"), problems),
        dataset=dataset,
        cases=cases,
        description=description,
        concurrency=concurrency,
        seed=seed,
        pairwise=pairwise,
    )
    return suite, problems
