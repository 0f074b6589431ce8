"""GET /api/models/{alias}/loop and the console's /console/models/{alias}/loop on a real server, over a
loop built with the real services: the JSON names each node with its console path, every one of those
paths opens in the console, the page links them all, and the models and fine-tune pages link to it."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fmops.catalog.builtin import DEFAULT_CHAT_MODEL
from fmops.finetune.loop import model_loop
from fmops.platform import Platform
from fmops.settings import load_settings
from support.browser import create_user_key, web_session
from support.loop_world import ACTOR, MODEL, LoopWorld, build_loop, finetune
from support.security import server_store
from support.server import RunningServer

SLASHED = "team/tickets-ft"  # aliases may hold slashes: the loop's route must still be the one matched


@dataclass
class Served:
    server: RunningServer
    world: LoopWorld
    engineer: httpx.Client  # signed in to the console
    engineer_key: str
    consumer_key: str


@pytest.fixture(scope="module")
def served(sqlite_server: RunningServer) -> Iterator[Served]:
    with sqlite_server.client() as admin:
        project_id = admin.get("/api/me").json()["project_id"]
    with server_store(sqlite_server) as store:
        settings = load_settings({"home": sqlite_server.home, "database_url": store.url})
        platform = Platform.build(settings, store, serving=False)
        world = build_loop(platform, project_id)
        finetune(platform, project_id, world.curated, alias=SLASHED)
    key = create_user_key(sqlite_server, "loop-engineer", "engineer")
    client, _ = web_session(sqlite_server, key)
    yield Served(
        sqlite_server, world, client, key, create_user_key(sqlite_server, "loop-consumer", "consumer")
    )
    client.close()


def _loop(served: Served, alias: str, key: str | None = None) -> httpx.Response:
    with served.server.client(key or served.engineer_key) as api:
        answer: httpx.Response = api.get(f"/api/models/{alias}/loop")
        return answer


def _paths(data: dict[str, Any]) -> list[str]:
    """Every console path the loop names, in chain order."""
    found = [data["url"], *(t["url"] for t in data["traces"]), *(d["url"] for d in data["datasets"])]
    found += [data["finetune"]["url"], data["model"]["url"], *(r["url"] for r in data["evals"])]
    found += [e["url"] for e in data["endpoints"]] + [x["url"] for x in data["experiments"]]
    return found + [p["url"] for p in data["promotions"]]


def test_the_api_gives_the_loop_with_each_nodes_id_and_console_path(served: Served) -> None:
    answer = _loop(served, MODEL)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    world = served.world
    with server_store(served.server) as store:  # what `fmops models loop --json` prints
        assert data == model_loop(store, world.project_id, MODEL).to_dict()
    assert data["url"] == f"/console/models/{MODEL}/loop"
    assert data["traces"] == [
        {
            "dataset_version_id": world.traced.id,
            "via": "traces",
            "filter": {"model": "small"},
            "traces": 4,
            "url": "/console/traces?model=small&spans=all",
            "left_out": [],
            "queue": None,
            "queue_url": None,
        }
    ]
    assert [(d["id"], d["ref"], d["url"]) for d in data["datasets"]] == [
        (world.traced.id, "tickets@1", "/console/data/tickets/versions/1"),
        (world.curated.id, "tickets@2", "/console/data/tickets/versions/2"),
    ]
    assert data["finetune"]["job_id"] == world.job_id
    assert data["finetune"]["url"] == f"/console/finetunes/{world.job_id}"
    assert data["model"]["alias"] == MODEL
    assert data["model"]["in_catalog"] is True
    assert [(r["run_id"], r["url"]) for r in data["evals"]] == [
        (world.run_id, f"/console/evals/runs/{world.run_id}")
    ]
    assert data["evals"][0]["score"] == pytest.approx(2 / 3)
    assert [x["endpoint"] for x in data["experiments"]] == ["tickets-canary"]
    [promotion] = data["promotions"]
    assert (promotion["endpoint"], promotion["variant"], promotion["this_model"]) == (
        "tickets",
        "tuned",
        True,
    )
    assert promotion["actor"] == ACTOR
    assert promotion["url"] == "/console/endpoints/tickets"


def test_every_path_the_loop_names_opens_in_the_console(served: Served) -> None:
    for path in _paths(_loop(served, MODEL).json()):
        assert served.engineer.get(path).status_code == 200, path


def test_an_alias_with_a_slash_has_its_loop_and_its_profile(served: Served) -> None:
    answer = _loop(served, SLASHED)
    assert answer.status_code == 200, answer.text
    assert answer.json()["url"] == f"/console/models/{SLASHED}/loop"
    assert answer.json()["finetune"]["job_id"] != served.world.job_id
    with served.server.client() as api:
        assert api.get(f"/api/models/{SLASHED}").json()["alias"] == SLASHED  # the profile route still matches
    page = served.engineer.get(f"/console/models/{SLASHED}/loop")
    assert page.status_code == 200
    assert f"The loop of {SLASHED}" in page.text


def test_a_model_no_finetune_produced_has_no_loop(served: Served) -> None:
    for alias in (DEFAULT_CHAT_MODEL, "no-such-model"):
        answer = _loop(served, alias)
        assert answer.status_code == 404, answer.text
        assert f"model '{alias}' was not produced by a fine-tune" in answer.json()["error"]["message"]
        assert served.engineer.get(f"/console/models/{alias}/loop").status_code == 404


def test_the_loop_is_for_engineers(served: Served) -> None:
    answer = _loop(served, MODEL, served.consumer_key)
    assert answer.status_code == 403
    assert "engineer" in answer.json()["error"]["message"]


def test_the_page_shows_the_chain_as_linked_cards_in_order(served: Served) -> None:
    page = served.engineer.get(f"/console/models/{MODEL}/loop")
    assert page.status_code == 200
    text = page.text
    order = [
        text.index(f'data-node="{node}"') for node in ("traces", "datasets", "finetune", "model", "evals")
    ]
    order += [text.index(f'data-node="{node}"') for node in ("experiments", "promotions")]
    assert order == sorted(order)
    data = _loop(served, MODEL).json()
    for path in _paths(data)[1:]:
        assert f'href="{html.escape(path)}"' in text, path
    assert "better exact match" in text  # the promotion's note
    assert "by eve" in text


def test_the_models_page_and_the_finetune_page_link_to_the_loop(served: Served) -> None:
    models = served.engineer.get("/console/models").text
    assert f'href="/console/models/{MODEL}/loop"' in models
    assert f'href="/console/models/{DEFAULT_CHAT_MODEL}/loop"' not in models  # a built-in has no loop
    job = served.engineer.get(f"/console/finetunes/{served.world.job_id}").text
    assert f'href="/console/models/{MODEL}/loop"' in job
