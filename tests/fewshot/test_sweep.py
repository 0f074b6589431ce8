"""`fmops data sweep` removes the few-shot indexes whose records no dataset version holds any more (a
deleted dataset's), and keeps those a version still holds, those of another project's versions with
the same records, and any written within --older-than."""

from __future__ import annotations

import os
import time
from pathlib import Path

from typer.testing import CliRunner

from fmops.artifacts import ArtifactStore
from fmops.cli import app
from fmops.datasets import DatasetService
from fmops.fewshot.index import index_key
from fmops.fewshot.sweep import sweep_indexes
from fmops.store import Store

RECORDS = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(3)]


def _index(artifacts: ArtifactStore, key: str, age_seconds: float) -> Path:
    with artifacts.open_write(key) as sink:
        sink.write(b"an index")  # its contents do not matter to the sweep
    path = Path(artifacts.full_path(key))
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


def test_indexes_no_version_holds_are_swept(store: Store, tmp_path: Path) -> None:
    artifacts = ArtifactStore((tmp_path / "artifacts").as_uri())
    datasets = DatasetService(store, artifacts)
    kept = datasets.create_version(project_id="p", name="kept", kind="completion", batches=[RECORDS])
    gone = datasets.create_version(project_id="p", name="gone", kind="completion", batches=[RECORDS[:2]])
    twin = datasets.create_version(project_id="q", name="twin", kind="completion", batches=[RECORDS[:2]])
    old = 7200.0
    paths = {
        "kept": _index(artifacts, index_key("p", kept.content_hash), old),
        "gone": _index(artifacts, index_key("p", gone.content_hash), old),
        "twin": _index(artifacts, index_key("q", twin.content_hash), old),
        "fresh": _index(artifacts, index_key("p", "f" * 64), 10),  # being built for a version saved meanwhile
    }
    assert sweep_indexes(store, artifacts) == []  # every old one is held
    datasets.delete_dataset("p", "gone")
    assert sweep_indexes(store, artifacts) == [index_key("p", gone.content_hash)]
    assert not paths["gone"].exists()
    assert all(paths[name].exists() for name in ("kept", "twin", "fresh"))
    assert sweep_indexes(store, artifacts, older_than_seconds=0) == [index_key("p", "f" * 64)]
    assert sweep_indexes(store, artifacts, older_than_seconds=0) == []


def test_the_cli_sweep_counts_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"FMOPS_HOME": str(home)}
    runner = CliRunner()
    made = runner.invoke(app, ["data", "list"], env=env)
    assert made.exit_code == 0, made.output
    artifacts = ArtifactStore((home / "artifacts").as_uri())
    _index(artifacts, index_key("default", "a" * 64), 7200)
    swept = runner.invoke(app, ["data", "sweep"], env=env)
    assert swept.exit_code == 0, swept.output
    assert "removed 1 file(s)" in swept.output
    assert f"removed{index_key('default', 'a' * 64)}" in "".join(swept.output.split())  # rich wraps it
