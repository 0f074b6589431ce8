"""fmops's own entry points are looked up by name without reading any package's metadata (plugins.BUILT_IN):
the table must say what pyproject.toml declares, or a built-in would load one way and list another."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from fmops.plugins import BUILT_IN, load_object

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_built_in_table_is_what_pyproject_declares() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]
    for group, names in BUILT_IN.items():
        assert names == declared[group], f"plugins.BUILT_IN[{group!r}] differs from pyproject.toml"


def test_each_built_in_loads_what_its_entry_point_names() -> None:
    from importlib.metadata import entry_points

    for group, names in BUILT_IN.items():
        installed = {ep.name: ep for ep in entry_points(group=group) if ep.name in names}
        assert set(installed) == set(names), group
        for name in names:
            assert load_object(group, name) is installed[name].load(), f"{group}:{name}"


def test_built_ins_are_found_without_scanning_entry_points() -> None:
    """An eval run looks up a provider and its scorers by name: none of it reads package metadata."""
    code = (
        "import fmops.plugins as plugins\n"
        "def scan(**asked): raise AssertionError(f'entry points scanned for {asked}')\n"
        "plugins.entry_points = scan\n"
        "from fmops.providers.registry import get_provider_class\n"
        "from fmops.scorers.registry import find_scorer\n"
        "assert get_provider_class('openai').__name__ == 'OpenAIProvider'\n"
        "assert find_scorer('exact_match').__name__ == 'ExactMatch'\n"
        "assert find_scorer('regex').__name__ == 'RegexMatch'\n"
        "print('ok')\n"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert answer.stdout.strip() == "ok", answer.stderr
