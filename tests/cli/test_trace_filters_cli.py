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
# The guardrail decisions on each call (by its index in CALLS): (policy label, outcome).
DECISIONS = {
    0: [("model:small/deny", "blocked")],
    1: [("watch", "flagged"), ("model:small/deny", "allowed")],
}
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
    "--blocked-by",
    "--flagged-by",
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
                for policy, outcome in DECISIONS.get(len(traces) - 1, ()):
                    session.add(  # a decision of the guardrail engine, as a child span of the call
                        Span(
                            span_id=new_span_id(),
                            trace_id=row.trace_id,
                            parent_span_id=row.span_id,
                            project_id=project,
                            name=f"guardrail {policy}",
                            kind="guardrail",
                            start_time=row.start_time,
                            input={},
                            output={},
                            attributes={"fmops.guardrail.policy": policy, "fmops.guardrail.outcome": outcome},
                        )
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
            ["traces", "search", "--blocked-by", "model:small/deny", "--json"],
            ["traces", "search", "--blocked-by", "*", "--json"],
            ["traces", "search", "--flagged-by", "watch", "--json"],
            ["traces", "search", "--flagged-by", "model:small/deny", "--json"],
            ["data", "from-traces", "blocked", "--blocked-by", "*"],
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


def test_guardrail_filters_find_the_calls_a_policy_blocked_or_flagged(
    runs: tuple[list[str], list[Outcome]],
) -> None:
    traces, out = runs
    assert [r["trace_id"] for r in json.loads(out[10].ok())] == [traces[0]]
    assert [r["trace_id"] for r in json.loads(out[11].ok())] == [traces[0]]
    assert [r["trace_id"] for r in json.loads(out[12].ok())] == [traces[1]]
    assert json.loads(out[13].ok()) == []  # an allowed decision is neither
    assert "1 traces with a chat example" in out[14].ok()
    assert '"blocked_by":"*"' in out[14].ok().replace(" ", "")  # the filter, in the lineage
