"""The loop of a fine-tuned model (fmops.finetune.loop) on SQLite and PostgreSQL, walked over objects
the real services made: traces -> dataset versions -> fine-tune -> model -> eval runs -> experiment ->
promotion, each node with the console path it links to."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from fmops.annotation import DecisionCreate, QueueCreate
from fmops.artifacts import ArtifactStore
from fmops.catalog.builtin import DEFAULT_CHAT_MODEL
from fmops.datasets import DatasetService
from fmops.datasets.records import RecordKind
from fmops.endpoints.experiments import promote
from fmops.endpoints.service import EndpointService
from fmops.errors import NotFound
from fmops.finetune.loop import model_loop, traces_path
from fmops.platform import Platform
from fmops.prompts.service import PromptService
from fmops.web.routers.console_data_view import traces_link
from support.annotation_world import make_world
from support.loop_world import ACTOR, MODEL, LoopWorld, build_loop, finetune


@pytest.fixture
def world(platform: Platform) -> LoopWorld:
    platform.auth.bootstrap(platform.settings.home / "admin.key")
    with platform.store.session() as session:
        project_id = platform.auth.project_by_name(session, "default").id
    return build_loop(platform, project_id)


def test_the_loop_walks_from_the_model_back_to_its_traces_and_on_to_its_promotion(
    platform: Platform, world: LoopWorld
) -> None:
    loop = model_loop(platform.store, world.project_id, MODEL)
    assert loop.url == f"/console/models/{MODEL}/loop"

    [traces] = loop.traces
    assert (traces.via, traces.filter, traces.traces) == ("traces", {"model": "small"}, 4)
    assert traces.dataset_version_id == world.traced.id
    assert traces.url == "/console/traces?model=small&spans=all"
    assert traces.left_out == []

    assert [(d.ref, d.source, d.step, d.rows) for d in loop.datasets] == [
        ("tickets@1", "traces", None, 4),
        ("tickets@2", "curation", "dedup", 3),  # the question asked twice, once
    ]
    assert [d.url for d in loop.datasets] == [
        "/console/data/tickets/versions/1",
        "/console/data/tickets/versions/2",
    ]
    assert loop.datasets[1].parent_id == world.traced.id

    ft = loop.finetune
    assert (ft.job_id, ft.status, ft.method, ft.base) == (
        world.job_id,
        "succeeded",
        "sft",
        DEFAULT_CHAT_MODEL,
    )
    assert (ft.dataset_version_id, ft.dataset_ref) == (world.curated.id, "tickets@2")
    assert ft.metrics["final_loss"] == 1.25
    assert ft.url == f"/console/finetunes/{world.job_id}"

    model = loop.model
    assert (model.alias, model.in_catalog, model.provider, model.base) == (
        MODEL,
        True,
        "llamacpp",
        DEFAULT_CHAT_MODEL,
    )
    assert model.id is not None
    assert model.url == "/console/models"

    [run] = loop.evals  # the base's target of the same run is not this model's
    assert (run.run_id, run.suite, run.status, run.target, run.target_index) == (
        world.run_id,
        "tickets-eval",
        "succeeded",
        MODEL,
        0,
    )
    assert run.score == pytest.approx(2 / 3)
    assert run.n == 3
    assert run.passed is True
    assert run.url == f"/console/evals/runs/{world.run_id}"

    assert [(e.name, e.serves_as) for e in loop.endpoints] == [
        ("tickets", ["model"]),  # promoted: the endpoint's own model now
        ("tickets-canary", ["variant:candidate"]),
    ]
    [experiment] = loop.experiments
    assert (experiment.endpoint, experiment.control, experiment.url) == (
        "tickets-canary",
        "control",
        "/console/endpoints/tickets-canary",
    )
    assert [(a.name, a.model, a.weight, a.uses_model) for a in experiment.variants] == [
        ("control", DEFAULT_CHAT_MODEL, 9.0, False),
        ("candidate", MODEL, 1.0, True),
    ]

    [promotion] = loop.promotions
    assert (promotion.endpoint, promotion.variant, promotion.model, promotion.this_model) == (
        "tickets",
        "tuned",
        MODEL,
        True,
    )
    assert (promotion.actor, promotion.note, promotion.url) == (
        ACTOR,
        "better exact match",
        "/console/endpoints/tickets",
    )

    data: dict[str, Any] = loop.to_dict()
    assert datetime.fromisoformat(data["promotions"][0]["at"]) == promotion.at
    assert set(data) == {
        "model",
        "finetune",
        "traces",
        "datasets",
        "evals",
        "endpoints",
        "experiments",
        "promotions",
        "url",
    }


def test_a_promotion_the_model_lost_is_in_its_loop(platform: Platform, world: LoopWorld) -> None:
    service = EndpointService(
        platform.store, platform.catalog, PromptService(platform.store, platform.catalog)
    )
    promote(service, world.project_id, "tickets-canary", "control", actor="kim")
    loop = model_loop(platform.store, world.project_id, MODEL)
    assert [(p.endpoint, p.variant, p.model, p.this_model, p.actor) for p in loop.promotions] == [
        ("tickets-canary", "control", DEFAULT_CHAT_MODEL, False, "kim"),  # newest first
        ("tickets", "tuned", MODEL, True, ACTOR),
    ]
    assert [e.name for e in loop.endpoints] == ["tickets"]
    assert loop.experiments == []


def test_a_model_with_nothing_after_its_finetune_has_a_short_loop(
    platform: Platform, world: LoopWorld
) -> None:
    datasets = DatasetService(platform.store, ArtifactStore.from_settings(platform.settings))
    imported = datasets.create_version(
        project_id=world.project_id,
        name="upload",
        kind=RecordKind.chat,
        batches=[
            [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}] * 2
        ],
        source={"type": "import", "file": "upload.jsonl"},
    )
    finetune(platform, world.project_id, imported, alias="lonely-ft")
    platform.catalog.remove(world.project_id, "lonely-ft")  # the lineage outlives the model
    loop = model_loop(platform.store, world.project_id, "lonely-ft")
    assert [d.ref for d in loop.datasets] == ["upload@1"]
    assert loop.traces == []
    assert (loop.evals, loop.endpoints, loop.experiments, loop.promotions) == ([], [], [], [])
    assert (loop.model.in_catalog, loop.model.id, loop.model.provider) == (False, None, None)


def test_a_model_no_finetune_produced_has_no_loop(platform: Platform, world: LoopWorld) -> None:
    refusals = {DEFAULT_CHAT_MODEL: ":", "no-such-model": " (nor is it in this project's catalog)"}
    for alias, tail in refusals.items():
        said = f"model '{alias}' was not produced by a fine-tune{tail}"
        with pytest.raises(NotFound, match=re.escape(said)):
            model_loop(platform.store, world.project_id, alias)
    with pytest.raises(NotFound):  # another project's model is not this one's
        model_loop(platform.store, "0" * 32, MODEL)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"model": "small", "root_only": True},
        {"model": "small", "feedback": "positive", "status": "ok", "prompt_version": 3},
        {"tags": ["a", "b"], "user": "u", "start": "2026-01-01T00:00:00+00:00", "min_score": 0.5},
        {"trace_id": "abc123", "model": "x"},
        {"endpoint": "tickets", "variant": "tuned", "q": "refund", "session_id": "s", "prompt_name": "p"},
    ],
)
def test_the_traces_link_is_the_one_the_data_pages_give(filters: dict[str, Any]) -> None:
    """The console's own link for a version's traces (console_data_view.traces_link), as a drift guard:
    the service cannot import the web layer, so it writes the same URL itself."""
    path, left_out = traces_path(filters)
    expected, expected_left_out = traces_link(filters)
    assert path == expected.removesuffix("?")
    assert left_out == sorted(expected_left_out)


def test_a_model_trained_on_a_queues_export_links_the_queue_and_its_traces(platform: Platform) -> None:
    people = make_world(platform)
    engineer, annotator = people.principals["engineer"], people.principals["ann"]
    people.trace("Where is my parcel?", "On its way.")
    body = {"name": "support", "filter": {"model": "small", "start": "2026-01-01T00:00:00+00:00"}}
    queue = people.service.create(engineer, QueueCreate.model_validate(body)).queue
    item = people.service.next_item(annotator, "support")
    assert item is not None
    people.service.decide(annotator, "support", item.id, DecisionCreate(action="accept"))
    exported = people.service.export(engineer, "support")
    finetune(platform, engineer.project_id, exported, alias="reviewed-ft")

    [traces] = model_loop(platform.store, engineer.project_id, "reviewed-ft").traces
    assert (traces.via, traces.queue, traces.queue_url) == (
        "annotation",
        "support",
        f"/console/annotation/{queue.id}",
    )
    assert traces.url == "/console/traces?model=small&spans=all"
    assert traces.left_out == ["start"]  # the explorer's URL has ranges (last 24 h...), not a start time
    assert traces.dataset_version_id == exported.id
