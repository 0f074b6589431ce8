"""`fmops assistants` through the console script's `main()`: publish from flags and from a YAML file
(flags override it), again with nothing changed, list (table, JSON, with usage), remove, and
mistakes that print one `error:` line (a disabled endpoint, a user not in the project, a bad role).

One fresh process runs the whole session, calling `main()` once per command as the `fmops` script does.
"""

from __future__ import annotations

import json

import pytest

from support import cli_runs
from support.cli_runs import Outcome

MODEL = "smollm2-135m-instruct"  # built in: every home has it
HELPER = """
name: Support helper
endpoint: support-bot
description: Answers questions about orders.
starters: ["Where is my order?", "How do I return an item?"]
roles: [consumer]
"""
COMMANDS = {
    "endpoint": ["endpoints", "create", "{endpoint}"],
    "retired": ["endpoints", "create", "{retired}"],
    "alice": ["users", "create", "alice"],
    "flags": [
        "assistants",
        "publish",
        "triage",
        "--endpoint",
        "support-bot",
        "--description",
        "Sorts tickets",
        "--starter",
        "Sort this ticket",
        "--user",
        "alice",
        "--role",
        "engineer",
    ],
    "file": ["assistants", "publish", "-f", "{helper}"],
    "file-again": ["assistants", "publish", "-f", "{helper}"],
    "file-override": ["assistants", "publish", "-f", "{helper}", "--starter", "Hi"],
    "table": ["assistants", "list"],
    "json": ["assistants", "list", "--json"],
    "usage": ["assistants", "list", "--usage", "--window", "24h", "--json"],
    "rm": ["assistants", "rm", "triage"],
    "after-rm": ["assistants", "list", "--json"],
    # Mistakes
    "disabled": ["assistants", "publish", "x", "--endpoint", "retired", "--role", "consumer"],
    "stranger": ["assistants", "publish", "x", "--endpoint", "support-bot", "--user", "zed"],
    "bad-role": ["assistants", "publish", "x", "--endpoint", "support-bot", "--role", "guest"],
    "nobody": ["assistants", "publish", "x", "--endpoint", "support-bot"],
    "no-name": ["assistants", "publish", "--endpoint", "support-bot", "--role", "consumer"],
    "rm-missing": ["assistants", "rm", "nope"],
    "bad-window": ["assistants", "list", "--window", "2y"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    home = tmp_path_factory.mktemp("cli-assistants")
    files = {
        "{endpoint}": home / "bot.yaml",
        "{retired}": home / "retired.yaml",
        "{helper}": home / "helper.yaml",
    }
    files["{endpoint}"].write_text(f"name: support-bot\nmodel: {MODEL}\n")
    files["{retired}"].write_text(f"name: retired\nmodel: {MODEL}\nenabled: false\n")
    files["{helper}"].write_text(HELPER)
    argv = [[files[a].as_posix() if a in files else a for a in args] for args in COMMANDS.values()]
    outcomes = cli_runs.run_session(cli_runs.session_env(home, 100), argv, cwd=home)
    return dict(zip(COMMANDS, outcomes, strict=True))


def test_publish_list_and_remove(results: dict[str, Outcome]) -> None:
    for setup in ("endpoint", "retired", "alice"):
        results[setup].ok()
    assert results["flags"].ok() == "created assistant triage (endpoint support-bot)\n"
    assert results["file"].ok() == "created assistant Support helper (endpoint support-bot)\n"
    assert results["file-again"].ok() == "unchanged assistant Support helper (endpoint support-bot)\n"
    assert results["file-override"].ok() == "updated assistant Support helper (endpoint support-bot)\n"
    table = results["table"].ok()
    assert "Support helper" in table
    assert "triage" in table
    assert all(len(line) <= 100 for line in table.splitlines())
    listed = {a["name"]: a for a in json.loads(results["json"].ok())}
    assert listed["triage"]["roles"] == ["engineer"]
    assert listed["triage"]["users"] == ["alice"]
    assert listed["Support helper"]["starters"] == ["Hi"]
    assert listed["Support helper"]["description"] == "Answers questions about orders."
    used = {a["name"]: a["usage"] for a in json.loads(results["usage"].ok())}
    assert (used["triage"]["answers"], used["triage"]["up_share"]) == (0, None)
    assert results["rm"].ok() == "removed assistant triage\n"
    assert [a["name"] for a in json.loads(results["after-rm"].ok())] == ["Support helper"]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        (
            "disabled",
            ["endpoint 'retired' is disabled, so no one can call it", "fmops endpoints update retired"],
        ),
        ("stranger", ["users.0: 'zed' is not a member of this project", "fmops users create zed"]),
        ("bad-role", ["roles.0: Input should be 'consumer'"]),
        ("nobody", ["say who may use it"]),
        ("no-name", ["name the assistant"]),
        ("rm-missing", ["no assistant named 'nope' in this project"]),
        ("bad-window", ["window must be one of 1h, 24h, 7d, 30d"]),
    ],
)
def test_mistakes_print_one_error_line(results: dict[str, Outcome], case: str, fragments: list[str]) -> None:
    line = results[case].error_line()
    for fragment in fragments:
        assert fragment in line


def test_the_help_in_commands_is_the_commands_own() -> None:
    from fmops.cli import COMMANDS as LAZY
    from fmops.cli.assistants import app

    assert LAZY["assistants"].help == app.info.help
