"""`fmops endpoints` through the console script's `main()`: create from a YAML file, list, show,
update, set weights, delete, and mistakes that print one `error:` line.

Starting the CLI costs seconds of imports, so the whole session (one home, the commands in order)
runs in one fresh process that calls `main()` once per command, as the `fmops` script does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli_runs import Outcome, run_session, session_env

PROMPT = """\
name: support
model: small
messages:
  - {role: system, content: "You answer for {{ company }}."}
  - {role: user, content: "{{ question }}"}
labels: [production, staging]
"""
# `on:` unquoted, as people write it: YAML 1.1 reads that key as `true`.
ENDPOINT = """\
name: support-bot
description: Answers support questions
prompt: support
params: {temperature: 0}
guardrails:
  - {on: input, scorer: regex, config: {pattern: "(?i)ignore previous"}, expect: fail, name: no-injection}
  - {on: output, scorer: length, config: {max: 2000}}
cache: {ttl: 300}
variants:
  - {name: a, weight: 1, label: production}
  - {name: b, weight: 1, label: staging, model: other}
"""
FILES = {
    "prompt.yaml": PROMPT,
    "endpoint.yaml": ENDPOINT,
    "change.yaml": "sticky: session\nfallbacks: [other]\n",
    "bad-label.yaml": "name: broken\nprompt: support\nlabel: prod\n",
    "bad-weights.yaml": "name: broken\nmodel: small\nvariants: [{name: a, weight: 0}]\n",
    "rename.yaml": "name: other-name\n",
    "no-one.yaml": "access: {roles: [], users: []}\n",
}
COMMANDS: dict[str, list[str]] = {
    "model-small": [
        "models",
        "add",
        "small",
        "--provider",
        "openai",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ],
    "model-other": [
        "models",
        "add",
        "other",
        "--provider",
        "openai",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ],
    "push": ["prompts", "push", "prompt.yaml"],
    "create": ["endpoints", "create", "endpoint.yaml"],
    "list": ["endpoints", "list"],
    "show": ["endpoints", "show", "support-bot"],
    "update": ["endpoints", "update", "support-bot", "--file", "change.yaml"],
    "weights": ["endpoints", "set-weights", "support-bot", "a=1", "b=3"],
    "access": ["endpoints", "update", "support-bot", "--access", "role:annotator", "--access", "user:alice"],
    "disable": ["endpoints", "update", "support-bot", "--disable"],
    "list-json": ["endpoints", "list", "--json"],
    "everyone": ["endpoints", "update", "support-bot", "--access", "everyone"],
    "show-everyone": ["endpoints", "show", "support-bot", "--json"],
    # Mistakes
    "duplicate": ["endpoints", "create", "endpoint.yaml"],
    "unknown-label": ["endpoints", "create", "bad-label.yaml"],
    "zero-weights": ["endpoints", "create", "bad-weights.yaml"],
    "bad-pair": ["endpoints", "set-weights", "support-bot", "a:1"],
    "unknown-variant": ["endpoints", "set-weights", "support-bot", "c=1"],
    "rename": ["endpoints", "update", "support-bot", "--file", "rename.yaml"],
    "nothing-to-change": ["endpoints", "update", "support-bot"],
    "bad-access": ["endpoints", "update", "support-bot", "--access", "guest:x"],
    "no-one": ["endpoints", "update", "support-bot", "--file", "no-one.yaml"],
    "unknown-role": ["endpoints", "update", "support-bot", "--access", "role:guest"],
    "model-clash": ["models", "add", "support-bot", "--provider", "openai", "--model", "m"],
    "unknown": ["endpoints", "show", "nope"],
    # Last: delete
    "delete": ["endpoints", "delete", "support-bot"],
    "list-after-delete": ["endpoints", "list", "--json"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    home: Path = tmp_path_factory.mktemp("cli-endpoints")
    for name, text in FILES.items():
        (home / name).write_text(text)
    outcomes = run_session(session_env(home, 100), list(COMMANDS.values()), cwd=home)
    return dict(zip(COMMANDS, outcomes, strict=True))


def test_create_list_show_update_weigh_delete(results: dict[str, Outcome]) -> None:
    for setup in ("model-small", "model-other", "push"):
        results[setup].ok()
    assert results["create"].ok() == "created endpoint support-bot\n"
    table = results["list"].ok()
    assert "support-bot" in table
    assert "a=1, b=1" in table
    shown = results["show"].ok()
    for fragment in ("support label production", "no-injection", "it passes", "300 s", "1 (50%)"):
        assert fragment in shown, shown
    updated = results["update"].ok()
    assert "session" in updated
    assert "other" in updated
    assert results["weights"].ok() == "endpoint support-bot: weights a=1, b=3\n"
    assert "role annotator, user alice (and engineers, admins)" in results["access"].ok()
    assert "everyone" in results["show"].ok()  # no access: every role may call it
    results["disable"].ok()
    [listed] = json.loads(results["list-json"].ok())
    assert (listed["name"], listed["enabled"], listed["sticky"], listed["fallbacks"]) == (
        "support-bot",
        False,
        "session",
        ["other"],
    )
    assert [(v["name"], v["weight"]) for v in listed["variants"]] == [("a", 1.0), ("b", 3.0)]
    assert listed["guardrails"][0]["on"] == "input"  # the YAML `on:` key read as the word
    assert listed["guardrails"][1]["config"] == {"min": None, "max": 2000, "unit": "characters"}
    assert listed["experiment_started_at"] is not None
    assert listed["access"] == {"roles": ["annotator"], "users": ["alice"]}
    results["everyone"].ok()
    assert json.loads(results["show-everyone"].ok())["access"] is None
    assert results["delete"].ok() == "deleted endpoint support-bot\n"
    assert json.loads(results["list-after-delete"].ok()) == []


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("duplicate", ["an endpoint named 'support-bot' already exists"]),
        ("unknown-label", ["label: no label 'prod' on prompt 'support'", "production, staging"]),
        ("zero-weights", ["bad-weights.yaml", "variants", "sum to 0"]),
        ("bad-pair", ["'a:1' is not VARIANT=WEIGHT"]),
        ("unknown-variant", ["no variant 'c'", "a, b"]),
        ("rename", ["cannot be renamed"]),
        ("nothing-to-change", ["nothing to change"]),
        ("bad-access", ["'guest:x' is not role:ROLE, user:NAME or everyone"]),
        ("no-one", ["no-one.yaml", "access: say who may call it"]),
        ("unknown-role", ["access.roles.0"]),
        ("model-clash", ["'support-bot' is the name of an endpoint"]),
        ("unknown", ["no endpoint named 'nope'", "fmops endpoints list"]),
    ],
)
def test_mistakes_print_one_error_line(results: dict[str, Outcome], case: str, fragments: list[str]) -> None:
    line = results[case].error_line()
    for fragment in fragments:
        assert fragment in line
