"""The layers run one way (pyproject's [tool.importlinter] contract), and the contract has teeth."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "fmops",
        src / "fmops",
        ignore=shutil.ignore_patterns("__pycache__", "static", "templates", "migrations"),
    )
    return src


def test_the_code_keeps_the_layers_contract() -> None:
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    # An adapter reaching up to the composition root, lazily, as judge_runtime once did.
    with (src / "fmops" / "providers" / "base.py").open("a") as f:
        f.write(
            "\n\ndef _late() -> object:\n    from fmops.platform import Platform\n\n    return Platform\n"
        )
    result = _lint(src)
    assert result.returncode == 1
    assert "fmops.providers is not allowed to import fmops.platform" in result.stdout


def test_a_new_package_must_be_given_a_layer(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    (src / "fmops" / "newthing").mkdir()
    (src / "fmops" / "newthing" / "__init__.py").write_text('"""Not yet in a layer."""\n')
    result = _lint(src)
    assert result.returncode == 1
    assert "fmops.newthing" in result.stdout
