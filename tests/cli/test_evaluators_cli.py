"""`fmops evaluators` through the console script's `main()`: manage a project's rules, list the
scorers, and mistakes that print one `error:` line.

Starting the CLI costs seconds of imports on a busy machine, so the whole session (one home, the
commands in order) runs in one fresh process that calls `main()` once per command, exactly as the
`fmops` script does, capturing each command's output and exit status.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import cli_runs
from support.cli_runs import Outcome

CONFIG = {"strings": ["sorry", "cannot"], "mode": "none"}
COMMANDS = {
    "create": ["create", "is-json", "--scorer", "json"],
    "create-from-file": [
        "create",
        "no-refusal",
        "--scorer",
        "contains",
        "--config-file",
        "{config}",
        "--model",
        "small",
        "--sample-rate",
        "0.25",
    ],
    "list-json": ["list", "--json"],
    "update": ["update", "no-refusal", "--disable", "--model", "any", "--sample-rate", "1"],
    "show-by-id": ["show", "{is-json-id}"],
    "table": ["list"],
    "delete": ["delete", "is-json"],
    "list-after-delete": ["list", "--json"],
    "scorers": ["scorers"],
    "scorers-json": ["scorers", "--json"],
    # Mistakes
    "unknown-scorer": ["create", "x", "--scorer", "meteor"],
    "bad-pattern": ["create", "x", "--scorer", "regex", "--config", '{"pattern": "(("}'],
    "not-json": ["create", "x", "--scorer", "regex", "--config", "{pattern: 1}"],
    "bad-rate": ["create", "x", "--scorer", "json", "--sample-rate", "0"],
    "duplicate": ["create", "no-refusal", "--scorer", "json"],
    "unknown-rule": ["show", "nope"],
    "nothing-to-change": ["update", "no-refusal"],
    "judge-model": ["create", "x", "--scorer", "judge", "--config", '{"model": "m", "rubric": "r"}'],
}


def run_session(home: Path, commands: dict[str, list[str]]) -> dict[str, Outcome]:
    argv = [["evaluators", *args] for args in commands.values()]
    outcomes = cli_runs.run_session(cli_runs.session_env(home, 80), argv, cwd=home)
    return dict(zip(commands, outcomes, strict=True))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    home = tmp_path_factory.mktemp("cli-evaluators")
    config = home / "config.json"
    config.write_text(json.dumps(CONFIG))
    # The id of the first rule is known only once it exists: run the session in two parts.
    first = run_session(home, {"create": COMMANDS["create"], "ids": ["list", "--json"]})
    rule_id = {r["name"]: r["id"] for r in json.loads(first["ids"].ok())}["is-json"]
    rest = {
        name: [a.replace("{config}", str(config)).replace("{is-json-id}", rule_id) for a in args]
        for name, args in COMMANDS.items()
        if name != "create"
    }
    return {**first, **run_session(home, rest)}


def test_create_list_update_show_delete(results: dict[str, Outcome]) -> None:
    assert results["create"].ok().startswith("created evaluator is-json (")
    results["create-from-file"].ok()
    rules = {r["name"]: r for r in json.loads(results["list-json"].ok())}
    assert set(rules) == {"is-json", "no-refusal"}
    assert rules["no-refusal"]["config"] == {**CONFIG, "case_sensitive": False}
    assert (rules["no-refusal"]["model"], rules["no-refusal"]["sample_rate"]) == ("small", 0.25)

    shown = results["update"].ok()
    assert "enabled False" in shown
    assert "model any" in shown
    assert "sample rate 100%" in shown
    assert '{"allow_code_fence":false}' in results["show-by-id"].ok()  # a rule by name or by id
    table = results["table"].ok()
    assert "no-refusal" in table
    assert all(len(line) <= 80 for line in table.splitlines())
    assert results["delete"].ok() == "deleted evaluator is-json\n"
    assert [r["name"] for r in json.loads(results["list-after-delete"].ok())] == ["no-refusal"]


def test_scorers_lists_every_installed_scorer(results: dict[str, Outcome]) -> None:
    table = results["scorers"].ok()
    for name in ("contains", "json", "json_schema", "judge", "length", "regex"):
        assert f"│ {name} " in table
    listed = {s["name"]: s for s in json.loads(results["scorers-json"].ok())}
    assert listed["judge"]["runs_as"] == "job"
    assert listed["length"]["config_schema"]["properties"]["unit"]["enum"] == ["characters", "words"]
    assert listed["exact_match"]["needs_expected"] is True
    uses = {"suite": True, "online_evaluator": False, "guardrail": False}
    assert listed["exact_match"]["usable_in"] == uses
    assert listed["regex"]["usable_in"]["guardrail"] is True


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("unknown-scorer", ["unknown scorer 'meteor'", "known scorers: all_of, any_of, bleu, chrf"]),
        ("bad-pattern", ["config.pattern", "not a valid regular expression"]),
        ("not-json", ["--config", "not valid JSON"]),
        ("bad-rate", ["sample_rate", "greater than 0"]),
        ("duplicate", ["an evaluator named 'no-refusal' already exists"]),
        ("unknown-rule", ["no evaluator named 'nope'", "fmops evaluators list"]),
        ("nothing-to-change", ["nothing to change", "fmops evaluators update --help"]),
        ("judge-model", ["config.model", "model 'm' does not exist"]),
    ],
)
def test_mistakes_print_one_error_line(results: dict[str, Outcome], case: str, fragments: list[str]) -> None:
    line = results[case].error_line()
    for fragment in fragments:
        assert fragment in line
