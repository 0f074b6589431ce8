"""Every `fmops …` command the README quotes exists: its `--help` runs.

Read from the README as it is when the tests run, so a command added to it (or to the CLI) later is
checked the same way; `a|b` lists alternatives (`fmops keys create|list`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fmops.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
# `fmops` as a command (not `fmops.toml`, `fmops[local]` or `import fmops`), then its words.
_COMMAND = re.compile(r"(?:^|[\s/`(])fmops((?: +[a-z][a-z0-9_|-]*)+)")


def quoted_commands(text: str) -> set[tuple[str, ...]]:
    """The word sequences after `fmops` in code spans and code blocks, alternatives expanded."""
    code = re.findall(r"```.*?```", text, flags=re.S) + re.findall(r"`[^`\n]+`", text)
    found: set[tuple[str, ...]] = set()
    for piece in code:
        for match in _COMMAND.finditer(piece):
            words = match.group(1).split()
            expanded: list[tuple[str, ...]] = [()]
            for word in words:
                expanded = [(*done, option) for done in expanded for option in word.split("|") if option]
            found.update(expanded)
    return found


def command_path(root: Any, words: tuple[str, ...]) -> tuple[str, ...] | None:
    """The command `words` name, without its arguments (None: a group has no such command)."""
    path: list[str] = []
    command = root
    for word in words:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            break  # a leaf command: the rest are its arguments
        if word not in subcommands:
            return None
        path.append(word)
        command = subcommands[word]
    return tuple(path)


@pytest.mark.slow  # ~70 commands' help, rendered by rich: seconds
def test_every_fmops_command_in_the_readme_exists() -> None:
    root = typer.main.get_command(app)
    quoted = quoted_commands(README.read_text())
    assert len(quoted) > 20, quoted  # the extraction still finds the README's commands
    missing, paths = [], set()
    for words in sorted(quoted):
        path = command_path(root, words)
        if path is None:
            missing.append(" ".join(words))
        else:
            paths.add(path)
    runner, failing = CliRunner(), []
    for path in sorted(paths):
        result = runner.invoke(app, [*path, "--help"])
        if result.exit_code != 0:
            failing.append(f"fmops {' '.join(path)} --help: exit {result.exit_code}: {result.output[-300:]}")
    assert not missing, f"the README quotes commands that do not exist: {missing}"
    assert not failing, failing


def test_the_extraction_reads_spans_blocks_and_alternatives() -> None:
    text = (
        "Run `fmops db upgrade|status` or `fmops projects retention NAME DAYS`; see fmops.toml.\n"
        "```sh\n.venv/bin/fmops users create alice --role engineer\npip install fmops[local]\n```\n"
    )
    assert quoted_commands(text) == {
        ("db", "upgrade"),
        ("db", "status"),
        ("projects", "retention"),
        ("users", "create", "alice"),
    }
    root = typer.main.get_command(app)
    assert command_path(root, ("users", "create", "alice")) == ("users", "create")
    assert command_path(root, ("nosuch", "thing")) is None
    assert command_path(root, ("keys", "nosuch")) is None


def test_document_links_stay_inside_the_repository_and_exist() -> None:
    root = README.parent
    for document in [README, *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(root), f"{document.name} links outside the repository: {target}"
            assert path.exists(), f"{document.name} links to a missing file: {target}"
