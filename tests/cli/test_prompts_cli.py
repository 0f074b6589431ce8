"""`fmops prompts` through the console script's `main()`: push files as versions, read, diff, label,
render, export to a folder and push that folder into another project; mistakes print one line.

Starting the CLI costs seconds of imports, so the whole session runs in one fresh process that calls
`main()` once per command, as the `fmops` script does, capturing each command's output and status.
"""

from __future__ import annotations

import json

import pytest

from support.cli_runs import Outcome, run_session, session_env

FILES = {
    "support.yaml": """\
name: support
description: Answers support questions
params: {temperature: 0.2}
messages:
  - role: system
    content: You answer for {{ company }}.
  - {role: user, content: "{{ question }}"}
labels: [staging]
""",
    "support-v2.yaml": """\
name: support
description: Answers support questions
params: {temperature: 0.7}
messages:
  - role: system
    content: You answer for {{ company }}. Be brief.
  - {role: user, content: "{{ question }}"}
""",
    "greeter.json": '{"name": "greeter", "messages": [{"role": "user", "content": "Hi {{ who }}"}]}',
    "bad.yaml": "name: bad\nmessages:\n  - role: user\n    content: |-\n      fine\n      {{ broken }\n",
    "vars.json": '{"company": "Acme", "question": "Where is {{ order }}?"}',
}

COMMANDS: dict[str, list[str]] = {
    "push": ["prompts", "push", "support.yaml", "greeter.json"],
    "push-again": ["prompts", "push", "support.yaml"],
    "push-v2": ["prompts", "push", "support-v2.yaml", "-m", "be brief", "-l", "production"],
    "list-json": ["prompts", "list", "--json"],
    "table": ["prompts", "list"],
    "show": ["prompts", "show", "support", "--label", "staging"],
    "show-json": ["prompts", "show", "support", "--json"],
    "versions": ["prompts", "versions", "support", "--json"],
    "diff": ["prompts", "diff", "support", "staging", "production"],
    "diff-same": ["prompts", "diff", "support", "1", "staging"],
    "label": ["prompts", "label", "support", "1", "production"],
    "render": ["prompts", "render", "support", "-l", "production", "--vars-file", "vars.json", "--json"],
    "render-vars": ["prompts", "render", "support", "--var", "company=A", "--var", "question=x=y"],
    "unlabel": ["prompts", "unlabel", "support", "staging"],
    "export": ["prompts", "export"],
    "export-dir": ["prompts", "export", "--dir", "exported"],
    "other-project": ["projects", "create", "other"],
    "import": ["prompts", "push", "exported/greeter.yaml", "exported/support.yaml", "--project", "other"],
    "export-other": ["prompts", "export", "--project", "other"],
    "delete": ["prompts", "delete", "greeter"],
    "list-after-delete": ["prompts", "list", "--json"],
    # Mistakes
    "bad-template": ["prompts", "push", "bad.yaml"],
    "unknown-label": ["prompts", "show", "support", "--label", "prod"],
    "missing-var": ["prompts", "render", "support", "--var", "company=A"],
    "bad-var": ["prompts", "render", "support", "--var", "novalue"],
    "unknown-prompt": ["prompts", "show", "nope"],
    "reserved": ["prompts", "label", "support", "1", "latest"],
    "no-file": ["prompts", "push", "missing.yaml"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    home = tmp_path_factory.mktemp("cli-prompts")
    for name, text in FILES.items():
        (home / name).write_text(text)
    outcomes = run_session(session_env(home, 100), list(COMMANDS.values()), cwd=home)
    return dict(zip(COMMANDS, outcomes, strict=True))


def test_push_list_show_and_versions(results: dict[str, Outcome]) -> None:
    assert results["push"].ok() == "support: new version 1 (staging)\ngreeter: new version 1\n"
    assert results["push-again"].ok() == "support: unchanged, version 1 (staging)\n"
    assert results["push-v2"].ok() == "support: new version 2 (production)\n"
    listed = {p["name"]: p for p in json.loads(results["list-json"].ok())}
    assert listed["support"]["latest_version"] == 2
    assert listed["support"]["labels"] == {"production": 2, "staging": 1}
    assert "production=2, staging=1" in results["table"].ok()

    shown = results["show"].ok()
    assert "  version 1\n" in shown
    assert "variables company, question" in shown
    assert "content: You answer for {{ company }}." in shown
    data = json.loads(results["show-json"].ok())
    assert (data["version"], data["message"], data["params"]) == (2, "be brief", {"temperature": 0.7})
    assert [v["version"] for v in json.loads(results["versions"].ok())] == [2, 1]


def test_diff_label_render(results: dict[str, Outcome]) -> None:
    diff = results["diff"].ok()
    assert "--- support@staging (version 1)" in diff
    assert "-  temperature: 0.2\n+  temperature: 0.7\n" in diff
    assert results["diff-same"].ok() == "no difference between versions 1 and 1\n"
    assert results["label"].ok() == "support: production -> version 1\n"
    assert json.loads(results["render"].ok()) == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "Where is {{ order }}?"},  # a value is text, never a template
    ]
    assert results["render-vars"].ok() == "system\nYou answer for A. Be brief.\nuser\nx=y\n"
    assert results["unlabel"].ok() == "support: removed staging (was version 1)\n"


def test_export_to_a_folder_and_push_it_into_another_project(results: dict[str, Outcome]) -> None:
    exported = results["export"].ok()
    assert exported.startswith("- name: greeter\n")
    assert "wrote exported/support.yaml" in results["export-dir"].ok()
    assert results["import"].ok() == "greeter: new version 1\nsupport: new version 1\n"
    assert results["export-other"].ok() == exported  # same content, the same YAML
    assert results["delete"].ok() == "deleted prompt greeter (1 versions)\n"
    assert [p["name"] for p in json.loads(results["list-after-delete"].ok())] == ["support"]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("bad-template", ["messages[0].content does not parse at line 2, column 1"]),
        ("unknown-label", ["no label 'prod' on prompt 'support'; labels: production"]),
        ("missing-var", ["missing variables: question"]),
        ("bad-var", ["--var", "'novalue' is not KEY=VALUE"]),
        ("unknown-prompt", ["no prompt 'nope' in this project; prompts: support"]),
        ("reserved", ["'latest' is reserved"]),
        ("no-file", ["cannot read missing.yaml"]),
    ],
)
def test_mistakes_print_one_error_line(results: dict[str, Outcome], case: str, fragments: list[str]) -> None:
    line = results[case].error_line()
    for fragment in fragments:
        assert fragment in line
