"""One set of trace filter options: `fmops traces search`, `fmops data from-traces` and `fmops queues
create` take the same flags (`--tag` repeatable, all must match), parsed alike, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.main import get_command

from fmops.auth import AuthService
from fmops.cli import app
from fmops.gateway.spans import new_span_id, new_trace_id
from fmops.store import Store, upgrade, utcnow
from fmops.store.models import Span, SpanTag
from support.cli_runs import Outcome, run_session, session_env

# (question, variant, tags)
CALLS = [
    ("Where is my parcel?", "a", ("env:prod", "team-a")),
    ("Why was I charged twice?", "b", ("env:prod",)),
    ("Can I pay by invoice?", "a", ()),
]
FILTER_FLAGS = {
    "--model",
    "--provider",
    "--status",
    "--user",
    "--session",
    "--endpoint",
    "--prompt",
    "--variant",
    "--feedback",
    "--score",
    "--q",
    "--tag",
    "--since",
    "--start",
    "--end",
}


def _home(home: Path) -> list[str]:
    store = Store(f"sqlite:///{home / 'fmops.db'}")
    traces = []
    try:
        upgrade(store)
        AuthService(store).bootstrap(home / "admin.key")
        project = AuthService(store).list_projects()[0][0].id
        with store.session() as session:
            for question, variant, tags in CALLS:
                traces.append(new_trace_id())
                row = Span(
                    span_id=new_span_id(),
                    trace_id=traces[-1],
                    project_id=project,
                    name="chat small",
                    start_time=utcnow(),
                    model="small",
                    endpoint="support",
                    variant=variant,
                    input={"messages": [{"role": "user", "content": question}]},
                    output={"role": "assistant", "content": "on it"},
                    attributes={},
                )
                session.add(row)
                session.add_all(
                    SpanTag(project_id=project, span_id=row.span_id, tag=t, start_time=row.start_time)
                    for t in tags
                )
    finally:
        store.dispose()
    return traces


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[Outcome]]:
    home = tmp_path_factory.mktemp("trace-filters-cli")
    traces = _home(home)
    outcomes = run_session(
        session_env(home, columns=160),
        [
            ["traces", "search", "--tag", "env:prod", "--json"],
            ["traces", "search", "--tag", "env:prod", "--tag", "team-a", "--json"],
            ["traces", "search", "--tag", "env:prod", "--variant", "b", "--json"],
            ["traces", "search", "--tag", "bad tag"],
            ["traces", "show", traces[0], "--json"],
            ["data", "from-traces", "prod", "--tag", "env:prod"],
            ["queues", "create", "review", "--tag", "team-a", "--endpoint", "support"],
            ["queues", "create", "nothing", "--tag", "team-b"],
            ["traces", "search", "--since", "1h", "--start", "2026-01-01"],
            ["traces", "search"],
        ],
    )
    return traces, outcomes


def test_the_three_commands_take_one_set_of_filter_flags() -> None:
    group = get_command(app)
    commands = {
        "traces search": group.commands["traces"].commands["search"],  # type: ignore[attr-defined]
        "data from-traces": group.commands["data"].commands["from-traces"],  # type: ignore[attr-defined]
        "queues create": group.commands["queues"].commands["create"],  # type: ignore[attr-defined]
    }
    for name, command in commands.items():
        flags = {opt for p in command.params for opt in p.opts}
        assert flags >= FILTER_FLAGS, f"{name} lacks {FILTER_FLAGS - flags}"


def test_tag_filters_search_show_datasets_and_queues(runs: tuple[list[str], list[Outcome]]) -> None:
    traces, out = runs
    prod = json.loads(out[0].ok())
    assert [r["trace_id"] for r in prod] == [traces[1], traces[0]]
    assert prod[1]["tags"] == ["env:prod", "team-a"]
    assert [r["trace_id"] for r in json.loads(out[1].ok())] == [traces[0]]
    assert [r["trace_id"] for r in json.loads(out[2].ok())] == [traces[1]]
    assert "--tag: 'bad tag' is not a valid tag" in out[3].error_line()
    [root] = json.loads(out[4].ok())["spans"]
    assert root["tags"] == ["env:prod", "team-a"]
    assert "2 traces with a chat example" in out[5].ok()
    assert '"tags":["env:prod"]' in out[5].ok().replace(" ", "")  # the filter, in the lineage
    assert "created queue review" in out[6].ok()
    assert ": 1 items" in out[6].ok()
    assert "no chat traces match the filter" in out[7].error_line()
    assert "give --since or --start, not both" in out[8].error_line()
    plain = out[9].ok()
    assert "#env:prod #team-a" in plain  # tags shown on the span's line
