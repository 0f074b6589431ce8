"""Schemathesis over the live server's /openapi.json, with the admin key, on both backends.

Every operation the server publishes is exercised with schema-valid (positive) and schema-invalid
(negative) requests, and every response goes through schemathesis' checks: no 5xx, documented
status codes, content types and headers, bodies matching their schema, invalid data refused,
valid data accepted, and auth actually enforced.

The one allowance: a few operations have rules a JSON schema cannot state (a key's `expires_at`
must lie in the future; a job's `kind` must be registered on this server and its `params` fit
that kind; a model's `provider` must be installed; chat messages have role-dependent fields;
a key's name must be printable; a trace search's cursor must come from a previous page and its
ranges must be ordered; a prompt's templates must parse and its variables be given; what an
endpoint names must exist; an optimisation's optimizer must be installed and its budget cover
the suite).
For those, a schema-valid request may get a 400 - but only one that names one of those fields.

Runs through schemathesis' Python API (`operation.as_strategy` + `case.call` +
`case.validate_response`) rather than `schemathesis.pytest.from_fixture`, whose pytest
integration does not run under pytest 9 (it reads and rewrites `Function._nodeid`, gone in pytest 9).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from support.server import RunningServer

# Per operation and generation mode; derandomized, so every run sends the same cases. The suite's
# default keeps `make test` in time; FMOPS_TEST_LONG=1 sends three times as many.
MAX_EXAMPLES = 36 if os.environ.get("FMOPS_TEST_LONG") == "1" else 12

ENDPOINT_FIELDS = {
    "prompt",
    "label",
    "version",
    "model",
    "params",
    "guardrails",
    "fallbacks",
    "variants",
    "fewshot",
}
# Operation -> body fields whose rules go beyond the schema (see the module docstring).
SEMANTIC_FIELDS: dict[str, set[str]] = {
    "POST /api/keys": {"expires_at", "name"},  # in the future; printable, not only spaces
    "POST /api/jobs": {"kind", "params"},  # registered here; valid for that kind
    "POST /api/models": {"provider", "model", "options"},  # installed; a local engine's files in the store
    # role-dependent fields (a tool message needs content); variables only for an endpoint
    "POST /v1/chat/completions": {"messages", "variables", "response_format"},
    # cursor from a page; ranges; a score range needs its score's name, a prompt version its prompt
    "GET /api/traces": {
        "cursor",
        "start",
        "min_latency_ms",
        "min_cost",
        "min_score",
        "score_name",
        "prompt_name",
    },
    "POST /api/evaluators": {"scorer", "config"},  # installed here; valid for that scorer
    "PATCH /api/evaluators/{rule_id}": {"scorer", "config"},
    "GET /api/stats/timeseries": {"start", "bucket"},  # a range, and not too many points in it
    "GET /api/stats/breakdown": {"start"},
    "POST /api/alerts": {"webhook_url", "filters", "threshold"},  # a public URL; filters of the metric
    "PATCH /api/alerts/{rule_id}": {"webhook_url", "filters", "threshold"},
    # templates parse; OpenAI params; valid JSON Schema; model in the catalog; label not `latest`/a number
    # ("": text with NUL in the free-form schema or params, refused for the whole body by PostgreSQL)
    "POST /api/prompts": {"messages", "params", "output_schema", "model", "labels", ""},
    "GET /api/prompts/{name}": {"label"},  # a version or a label, not both
    "PUT /api/prompts/{name}/labels/{label}": {"label"},
    "POST /api/prompts/{name}/render": {"label", "variables", "messages"},  # every variable; renders
    # the prompt, its label or version and each model exist; OpenAI params; weights sum above 0;
    # guardrail scorers installed with valid configs; the name is not a model's
    "POST /api/endpoints": {"name", *ENDPOINT_FIELDS},
    "PATCH /api/endpoints/{name}": ENDPOINT_FIELDS,
    "PUT /api/endpoints/{name}/weights": {"weights"},  # names of the endpoint's variants
    "POST /api/endpoints/{name}/promote": {"variant"},  # one of the endpoint's variants
    # a policy's guardrail is installed, its config fits it, its target model or endpoint exists, its
    # action and stage suit the guardrail; a PUT body's name is the path's; a list names each once
    "POST /api/policies": {"guardrail", "config", "target", "on", "action"},
    "POST /api/policies/apply": {"guardrail", "config", "target", "on", "action", "policies"},
    "PUT /api/policies/{scope}/{target}/{name}": {"guardrail", "config", "target", "on", "action", "name"},
    # role-dependent messages; each target's prompt, version, label and model exist; OpenAI
    # params; at most 50 cells (inputs x targets)
    "POST /api/playground": {"inputs", "targets"},
    # an uploaded file must parse as its format (named or from its extension), hold records of a known
    # shape, and convert to the kind asked for
    "POST /api/datasets/import": {"file", "format", "kind"},
    # the filter's ranges are ordered and some chat traces match it; the dataset holds that kind
    "POST /api/datasets/from-traces": {"filter", "name"},
    "POST /api/annotation-queues": {"filter"},  # ordered ranges; some chat traces match
    # labels in the queue's schema; a correction only with correct; an export needs a decided item
    "POST /api/annotation-queues/{queue}/items/{item_id}/decisions": {"labels", "corrected_output"},
    "POST /api/annotation-queues/{queue}/export": {"queue"},
    # the base model and the dataset exist and suit the method; config keys are TRL/PEFT settings
    # ("": text with NUL, refused for the whole body: PostgreSQL cannot store it)
    "POST /api/finetunes": {"base", "dataset", "method", "config", "name", "resume_from", ""},
    # the suite is checked whole: its shape, and that its dataset, models, prompts, endpoints and
    # scorers exist (one 400 listing every problem)
    "POST /api/evals/runs": {"suite", ""},
    # the same suite check, plus: the optimizer is an installed plugin and its config fits it, the
    # optimizer model exists, the budget covers the suite's held-out measurement
    "POST /api/optimizations": {"suite", "optimizer", "config", "optimizer_model", "budget", "prompt", ""},
}


def error_param(response: Any) -> str:
    try:
        param = response.json()["error"]["param"] or ""
    except (ValueError, KeyError, TypeError):
        return ""
    return re.split(r"[.\[]", str(param))[0]  # the field of `params.x` or `messages[0].content`


def exercise(
    operation: Any, mode: GenerationMode, auth: dict[str, str], failures: list[str], calls: Counter[str]
) -> None:
    """Run one operation in one generation mode; record each distinct failure once."""
    label = operation.label
    seen: set[str] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        calls[label] += 1
        response = case.call(headers=auth, timeout=30)
        excluded = []
        if (
            mode == GenerationMode.POSITIVE
            and response.status_code == 400
            and error_param(response) in SEMANTIC_FIELDS.get(label, set())
        ):
            excluded = [positive_data_acceptance]
        try:
            case.validate_response(response, headers=auth, excluded_checks=excluded)
        except (AssertionError, BaseExceptionGroup) as exc:
            found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            kinds = sorted({getattr(f, "title", None) or type(f).__name__ for f in found})
            key = f"{label} [{mode.value}] {', '.join(kinds)}"
            if key not in seen:  # one report per kind of failure and operation
                seen.add(key)
                detail = "\n      ".join(line for line in str(exc).strip().splitlines()[:14] if line.strip())
                failures.append(f"{key}\n      {detail}\n      {case.as_curl_command(headers=None)}")

    try:
        run()
    except Unsatisfiable:
        # Nothing in this operation can be made invalid (no parameters, or free-form strings only).
        assert mode == GenerationMode.NEGATIVE, label


def fuzz(server: RunningServer) -> tuple[list[str], Counter[str], list[str]]:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json", headers=auth)
    schema.config.update(base_url=server.url, headers=auth)
    failures: list[str] = []
    calls: Counter[str] = Counter()
    labels: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(operation, mode, auth, failures, calls)
    return failures, calls, labels


# Three times the examples over every operation: beyond the suite's 300 s per test on a busy machine.
@pytest.mark.timeout(1800 if MAX_EXAMPLES > 12 else 300)
def test_api_conforms_to_its_schema(server: RunningServer) -> None:
    published = httpx.get(server.url + "/openapi.json", timeout=30).json()
    expected = {f"{m.upper()} {p}" for p, item in published["paths"].items() for m in item}

    failures, calls, labels = fuzz(server)

    assert set(labels) == expected, "every published operation was loaded; none excluded"
    untested = sorted(label for label in labels if calls[label] == 0)
    assert untested == [], f"operations never called: {untested}"
    assert failures == [], "schemathesis found:\n" + "\n".join(failures)
    log = server.log_text()
    assert '" 500' not in log, "a request became a server error"
    assert "unhandled error" not in log
