"""`fmops guardrails` through the console script's `main()`: the installed checks, policies added to the
project, a model and an endpoint, a policies file applied twice (the second time changes nothing),
removal, a policy switched off and on, and mistakes that print one `error:` line.

One fresh process runs the whole session, calling `main()` once per command as the `fmops` script does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import cli_runs
from support.cli_runs import Outcome

MODEL = "smollm2-135m-instruct"  # built in: every home has it
POLICIES = """
policies:
  - name: no-pii
    guardrail: pii
    on: input
    action: redact
    config: {types: [email]}
  - name: keys
    scope: endpoint
    target: triage
    guardrail: secrets
    on: both
"""
ENDPOINT = f"name: triage\nmodel: {MODEL}\n"
COMMANDS = {
    "endpoint": ["endpoints", "create", "{endpoint}"],
    "list": ["guardrails", "list"],
    "list-json": ["guardrails", "list", "--json"],
    "add": ["guardrails", "add", "no-pii", "--guardrail", "pii", "--action", "mask"],
    "add-model": [
        "guardrails",
        "add",
        "short",
        "--guardrail",
        "length",
        "--on",
        "output",
        "--config",
        '{"max_chars": 4000}',
        "--model",
        MODEL,
    ],
    "apply": ["guardrails", "apply", "-f", "{policies}"],
    "apply-again": ["guardrails", "apply", "-f", "{policies}"],
    "table": ["guardrails", "policies"],
    "json": ["guardrails", "policies", "--json"],
    "endpoint-only": ["guardrails", "policies", "--scope", "endpoint", "--json"],
    "rm": ["guardrails", "rm", "keys", "--endpoint", "triage"],
    "after-rm": ["guardrails", "policies", "--json"],
    "disable": ["guardrails", "disable", "short", "--model", MODEL],
    "disable-again": ["guardrails", "disable", "short", "--model", MODEL],
    "after-disable": ["guardrails", "policies", "--json"],
    "enable": ["guardrails", "enable", "short", "--model", MODEL],
    "after-enable": ["guardrails", "policies", "--scope", "model", "--json"],
    # Mistakes
    "unknown": ["guardrails", "add", "x", "--guardrail", "nope"],
    "bad-config": ["guardrails", "add", "x", "--guardrail", "pii", "--config", '{"types": [], "extra": 1}'],
    "not-json": ["guardrails", "add", "x", "--guardrail", "pii", "--config", "{types: 1}"],
    "both-targets": [
        "guardrails",
        "add",
        "x",
        "--guardrail",
        "pii",
        "--model",
        MODEL,
        "--endpoint",
        "triage",
    ],
    "no-endpoint": ["guardrails", "add", "x", "--guardrail", "pii", "--endpoint", "nowhere"],
    "no-spans": ["guardrails", "add", "x", "--guardrail", "length", "--action", "redact"],
    "duplicate": ["guardrails", "add", "no-pii", "--guardrail", "pii"],
    "rm-missing": ["guardrails", "rm", "nope"],
    "enable-missing": ["guardrails", "enable", "nope", "--endpoint", "triage"],
    "disable-both-targets": ["guardrails", "disable", "x", "--model", MODEL, "--endpoint", "triage"],
    "bad-file": ["guardrails", "apply", "-f", "{bad}"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    home = tmp_path_factory.mktemp("cli-guardrails")
    files = {
        "{endpoint}": home / "triage.yaml",
        "{policies}": home / "policies.yaml",
        "{bad}": home / "bad.yaml",
    }
    files["{endpoint}"].write_text(ENDPOINT)
    files["{policies}"].write_text(POLICIES)
    files["{bad}"].write_text("- {name: a, guardrail: pii, on: up}\n- {guardrail: secrets}\n")
    argv = [[files[a].as_posix() if a in files else a for a in args] for args in COMMANDS.values()]
    outcomes = cli_runs.run_session(cli_runs.session_env(home, 100), argv, cwd=home)
    return dict(zip(COMMANDS, outcomes, strict=True))


def test_list_the_installed_guardrails(results: dict[str, Outcome]) -> None:
    table = results["list"].ok()
    for name in ("pii", "secrets", "regex", "length", "json_schema", "system_prompt_leak"):
        assert f"│ {name} " in table
    listed = {g["name"]: g for g in json.loads(results["list-json"].ok())}
    assert (listed["pii"]["spans"], listed["length"]["spans"]) == (True, False)


def test_add_apply_list_and_remove_policies(results: dict[str, Outcome]) -> None:
    results["endpoint"].ok()
    assert results["add"].ok() == "added policy no-pii\n"
    assert results["add-model"].ok() == f"added policy model:{MODEL}/short\n"
    # The file replaces the project's no-pii (mask -> redact, email only) and adds the endpoint's keys.
    applied = results["apply"].ok().splitlines()
    assert [line.split() for line in applied] == [
        ["updated", "no-pii"],
        ["created", "endpoint:triage/keys"],
        ["2", "of", "2", "policies", "changed"],
    ]
    assert results["apply-again"].ok().splitlines()[-1] == "0 of 2 policies changed"
    table = results["table"].ok()
    assert "no-pii" in table
    assert "keys" in table
    assert all(len(line) <= 100 for line in table.splitlines())
    stored = json.loads(results["json"].ok())
    assert [(p["scope"], p["target"], p["name"]) for p in stored] == [
        ("project", "", "no-pii"),
        ("model", MODEL, "short"),
        ("endpoint", "triage", "keys"),
    ]
    assert (stored[0]["action"], stored[0]["config"]) == ("redact", {"types": ["email"]})
    assert stored[1]["config"] == {"max_chars": 4000}
    assert [p["name"] for p in json.loads(results["endpoint-only"].ok())] == ["keys"]
    assert results["rm"].ok() == "removed policy endpoint:triage/keys\n"
    assert [p["name"] for p in json.loads(results["after-rm"].ok())] == ["no-pii", "short"]


def test_disable_and_enable_a_policy(results: dict[str, Outcome]) -> None:
    assert results["disable"].ok() == f"disabled policy model:{MODEL}/short\n"
    assert results["disable-again"].ok() == f"already disabled policy model:{MODEL}/short\n"
    stored = json.loads(results["after-disable"].ok())
    assert [(p["name"], p["enabled"]) for p in stored] == [("no-pii", True), ("short", False)]
    assert stored[1]["config"] == {"max_chars": 4000}  # kept as it was: only switched off
    assert results["enable"].ok() == f"enabled policy model:{MODEL}/short\n"
    assert [(p["name"], p["enabled"]) for p in json.loads(results["after-enable"].ok())] == [("short", True)]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("unknown", ["unknown guardrail 'nope'", "known guardrails: ", "pii"]),
        ("bad-config", ["config.types: ", "config.extra: "]),
        ("not-json", ["--config", "not valid JSON"]),
        ("both-targets", ["give --model or --endpoint, not both"]),
        ("no-endpoint", ["endpoint 'nowhere' does not exist", "known: triage"]),
        ("no-spans", ["redact needs the spans", "use block or flag"]),
        ("duplicate", ["policy 'no-pii' already exists"]),
        ("rm-missing", ["no policy named 'nope' on the project", "fmops guardrails policies"]),
        ("enable-missing", ["no policy named 'nope' on endpoint 'triage'"]),
        ("disable-both-targets", ["give --model or --endpoint, not both"]),
        ("bad-file", ["bad.yaml: invalid policy: policies.0.on: ", "policies.1.name: Field required"]),
    ],
)
def test_mistakes_print_one_error_line(results: dict[str, Outcome], case: str, fragments: list[str]) -> None:
    line = results[case].error_line()
    for fragment in fragments:
        assert fragment in line


def test_the_help_in_commands_is_the_commands_own() -> None:
    from fmops.cli import COMMANDS as LAZY
    from fmops.cli.guardrails import app

    assert LAZY["guardrails"].help == app.info.help


def test_files_are_read_as_given(tmp_path: Path) -> None:
    from fmops.guardrails.schemas import load_policies

    one = load_policies("name: solo\nguardrail: pii\n", "solo.yaml")  # one policy alone
    listed = load_policies('[{"name": "a", "guardrail": "pii", "target": "_"}]', "p.json")
    assert [p.name for p in one + listed] == ["solo", "a"]
