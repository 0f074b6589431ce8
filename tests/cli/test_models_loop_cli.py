"""`fmops models loop ALIAS`: a fine-tuned model's loop as a tree with console URLs, and the same loop as
the API's JSON with `--json`. (A model no fine-tune produced is the service's 404, which the CLI
prints as it prints every error: tests/finetune/test_loop.py checks the message.)"""

from __future__ import annotations

import json

import pytest

from fmops.platform import Platform
from fmops.settings import load_settings
from fmops.store import Store
from support.cli_runs import Result, run_all
from support.databases import migrated_sqlite_url
from support.loop_world import MODEL, LoopWorld, build_loop

BASE = "http://fmops.example:9000"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoopWorld, list[Result]]:
    home = tmp_path_factory.mktemp("loop-cli")
    url = migrated_sqlite_url(home)
    store = Store(url)
    try:
        platform = Platform.build(load_settings({"home": home, "database_url": url}), store, serving=False)
        platform.auth.bootstrap(home / "admin.key")
        with store.session() as session:
            project_id = platform.auth.project_by_name(session, "default").id
        world = build_loop(platform, project_id)
    finally:
        store.dispose()
    commands = [
        ["models", "loop", MODEL, "--url", BASE],
        ["models", "loop", MODEL, "--json"],
    ]
    return world, run_all(home, url, commands)


def test_the_tree_names_each_step_with_its_console_url(runs: tuple[LoopWorld, list[Result]]) -> None:
    world, (tree, _) = runs
    assert tree.returncode == 0, tree
    # An 80-column terminal wraps the long lines, and the tree's guides start each continued one.
    flat = "".join(tree.stdout.translate(str.maketrans("", "", "│├└─")).split())
    for step in (
        "traces",
        "dataset",
        "fine-tune",
        "model",
        "evalruns",
        "endpointsandexperiments",
        "promotions",
    ):
        assert step in flat, step
    for path in (
        f"/console/models/{MODEL}/loop",
        "/console/traces?model=small&spans=all",
        "/console/data/tickets/versions/1",
        "/console/data/tickets/versions/2",
        f"/console/finetunes/{world.job_id}",
        f"/console/evals/runs/{world.run_id}",
        "/console/endpoints/tickets-canary",
        "/console/endpoints/tickets",
    ):
        assert BASE + path in flat, path
    assert "varianttuned(thismodel)byeve" in flat


def test_json_is_the_loop_the_api_returns(runs: tuple[LoopWorld, list[Result]]) -> None:
    world, (_, as_json) = runs
    assert as_json.returncode == 0, as_json
    data = json.loads(as_json.stdout)
    assert data["url"] == f"/console/models/{MODEL}/loop"
    assert [d["ref"] for d in data["datasets"]] == ["tickets@1", "tickets@2"]
    assert data["finetune"]["job_id"] == world.job_id
    assert [r["run_id"] for r in data["evals"]] == [world.run_id]
    assert [(p["endpoint"], p["variant"]) for p in data["promotions"]] == [("tickets", "tuned")]
