"""Span tags on both backends: validation, the trace writer storing them in the span's transaction
(replays add none), the tag filter (all must match, paging, time bounds, projects apart), tags read
back, retention, OTLP attributes, and the index the filter reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from fmops.auth import Principal, Role
from fmops.datasets.from_traces import filter_json, parse_filter
from fmops.errors import UserError
from fmops.gateway.spans import CallRecord
from fmops.store import Store
from fmops.store.models import Project, SpanTag
from fmops.tracing.otlp import ingest
from fmops.tracing.otlp.decode import JSON, PROTOBUF
from fmops.tracing.otlp.encode import encode
from fmops.tracing.query import TraceFilters, TraceQuery
from fmops.tracing.retention import enforce
from fmops.tracing.tags import parse_tags
from fmops.tracing.writer import TraceWriter
from fmops.web.routers.console_data_view import traces_link
from fmops.web.routers.console_traces_view import read_query
from support.databases import migrated_sqlite_url
from support.otlp import attributes_of, json_body, json_span

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PROJECT = "p" * 32
OTHER = "o" * 32


def span(n: int, tags: tuple[str, ...] = (), project: str = PROJECT, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "span_id": f"{n:016x}",
        "trace_id": f"{n:032x}",
        "project_id": project,
        "name": "chat m",
        "kind": "llm",
        "start_time": T0 + timedelta(seconds=n),
        "end_time": T0 + timedelta(seconds=n, milliseconds=50),
        "model": "m",
        **extra,
    }
    if tags:
        row["tags"] = tags
    return row


def write(store: Store, rows: list[dict[str, Any]]) -> TraceWriter:
    writer = TraceWriter(store)

    async def main() -> None:
        writer.record_many(rows, ingested=True)
        await writer.flush()

    asyncio.run(main())
    return writer


def tag_rows(store: Store) -> set[tuple[str, str, str]]:
    with store.session() as session:
        return {(r.project_id, r.span_id, r.tag) for r in session.scalars(select(SpanTag))}


def ids(store: Store, project: str | None = PROJECT, **filters: Any) -> list[int]:
    page = TraceQuery(store).search(project, TraceFilters(**filters), limit=500)
    return [int(s.span_id, 16) for s in page.spans]


def test_parse_tags_accepts_lists_and_comma_separated_strings_and_refuses_bad_ones() -> None:
    assert parse_tags(" env:prod, team-a,,env:prod ,") == ("env:prod", "team-a")
    assert parse_tags(["a", "B", "a"]) == ("a", "B")  # case is kept, as in Langfuse
    assert parse_tags("") == ()
    for bad, words in (
        ("has space", "'has space' is not a valid tag"),
        ("x" * 65, "is not a valid tag: use 1 to 64 letters"),
        ("-leading", "is not a valid tag"),
        ("a\x00b", "is not a valid tag"),
        (",".join(f"t{i}" for i in range(21)), "at most 20 tags, not 21"),
    ):
        with pytest.raises(UserError, match=words) as caught:
            parse_tags(bad, param="metadata.tags")
        assert caught.value.param == "metadata.tags"
    with pytest.raises(UserError, match="tags are strings, not int"):
        parse_tags([1])  # type: ignore[list-item]


def test_writer_stores_tags_with_their_span_and_a_replay_adds_none(store: Store) -> None:
    writer = write(store, [span(1, ("env:prod", "team-a")), span(2), span(3, ("env:prod",))])
    assert writer.written == 3
    assert tag_rows(store) == {
        (PROJECT, f"{1:016x}", "env:prod"),
        (PROJECT, f"{1:016x}", "team-a"),
        (PROJECT, f"{3:016x}", "env:prod"),
    }
    with store.session() as session:
        (start,) = session.scalars(select(SpanTag.start_time).where(SpanTag.span_id == f"{3:016x}"))
    assert start == T0 + timedelta(seconds=3)  # the span's own, for the index's order
    # A replayed span (an OTLP client retrying) is stored once: its new tags are not added either.
    replay = write(store, [span(1, ("other",)), span(4, ("team-a",), project=OTHER)])
    assert (replay.written, replay.replayed) == (1, 1)
    assert (PROJECT, f"{1:016x}", "other") not in tag_rows(store)
    assert (OTHER, f"{4:016x}", "team-a") in tag_rows(store)


def test_strict_commit_resolves_with_the_tags_committed(store: Store) -> None:
    writer = TraceWriter(store)

    async def main() -> None:
        writer.start()
        writer.admit()
        await writer.commit([span(7, ("strict",))])
        await writer.close()

    asyncio.run(main())
    assert tag_rows(store) == {(PROJECT, f"{7:016x}", "strict")}


def test_tag_filter_all_must_match_pages_by_key_and_keeps_projects_apart(store: Store) -> None:
    rows = [span(n, ("even",) if n % 2 == 0 else ("odd",)) for n in range(1, 41)]
    for row in rows:
        if int(row["span_id"], 16) % 3 == 0:
            row["tags"] = (*row["tags"], "three")
    rows.append(span(100, ("even", "three"), project=OTHER))
    write(store, rows)
    assert ids(store, tags=("even",)) == list(range(40, 0, -2))
    assert ids(store, tags=("even", "three")) == [36, 30, 24, 18, 12, 6]
    assert ids(store, tags=("three", "even")) == [36, 30, 24, 18, 12, 6]
    assert ids(store, tags=("nobody",)) == []
    assert ids(store, None, tags=("even", "three"))[0] == 100  # every project (the operator's CLI)
    start, end = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    assert ids(store, tags=("even",), start=start, end=end) == [18, 16, 14, 12, 10]
    assert ids(store, tags=("odd",), model="other") == []
    # Keyset pages through the tag's index: none skipped or repeated.
    query, seen, cursor = TraceQuery(store), [], None
    while True:
        page = query.search(PROJECT, TraceFilters(tags=("odd",)), limit=7, cursor=cursor)
        seen += [int(s.span_id, 16) for s in page.spans]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == list(range(39, 0, -2))
    assert query.tags_of(PROJECT, [f"{6:016x}", f"{7:016x}", "missing"]) == {
        f"{6:016x}": ["even", "three"],
        f"{7:016x}": ["odd"],
    }


def test_filters_check_tags_and_travel_as_json(store: Store) -> None:
    with pytest.raises(UserError, match="'a b' is not a valid tag") as caught:
        TraceFilters(tags=("a b",))
    assert caught.value.param == "tags"
    with pytest.raises(UserError, match="at most 10 tags"):
        TraceFilters(tags=tuple(f"t{i}" for i in range(11)))
    filters = parse_filter({"tags": ["env:prod", "team-a"], "model": "m"})
    assert filters.tags == ("env:prod", "team-a")
    assert filter_json(filters) == {"model": "m", "tags": ("env:prod", "team-a")}
    assert parse_filter(filter_json(filters)) == filters
    assert "tags" not in filter_json(TraceFilters())
    with pytest.raises(UserError, match="not a valid tag"):
        parse_filter({"tags": ["ok", "no way"]})


def test_a_tag_built_dataset_links_to_the_explorer_with_its_tags() -> None:
    link, left_out = traces_link({"tags": ["env:prod", "team-a"], "model": "m"})
    assert link == "/console/traces?tags=env%3Aprod%2Cteam-a&model=m&spans=all"
    assert left_out == []
    assert read_query({"tags": "env:prod, team-a"}).filters.tags == ("env:prod", "team-a")
    with pytest.raises(UserError, match="'a b' is not a valid tag"):
        read_query({"tags": "ok,a b"})


def test_retention_deletes_the_tags_of_the_spans_it_deletes(store: Store) -> None:
    now = datetime.now(UTC)
    with store.session() as session:
        project = Project(name="kept-30-days", retention_days=30, created_at=now)
        session.add(project)
    write(
        store,
        [
            span(1, ("old", "both"), project=project.id, start_time=now - timedelta(days=40)),
            span(2, ("new", "both"), project=project.id, start_time=now - timedelta(days=1)),
        ],
    )
    done = enforce(store, default_days=30, now=now)
    assert done.spans_deleted == 1
    assert tag_rows(store) == {(project.id, f"{2:016x}", "new"), (project.id, f"{2:016x}", "both")}


def test_otlp_tags_from_fmops_or_langfuse_attributes() -> None:
    def rows(attributes: dict[str, Any]) -> Any:
        return ingest(json_body(json_span("step", attributes)), JSON, "proj", "key")

    assert rows({"fmops.tags": ["a", "b"]}).rows[0]["tags"] == ("a", "b")
    assert rows({"langfuse.trace.tags": "x, y"}).rows[0]["tags"] == ("x", "y")
    assert "tags" not in rows({"gen_ai.request.model": "m"}).rows[0]
    refused = rows({"fmops.tags": ["fine", "not fine"]})
    assert refused.rejected == 1
    assert refused.message is not None
    assert "'not fine' is not a valid tag" in refused.message


def test_tags_travel_through_otlp_export_and_back() -> None:
    """A gateway call's tags are exported as `fmops.tags`, which ingest reads back."""
    principal = Principal(
        key_id="k", user_id="u", user_name="a", project_id="proj", project_name="d", role=Role.consumer
    )
    record = CallRecord(principal=principal, model="talker", tags=("env:prod", "team-a"))
    assert "tags" not in CallRecord(principal=principal, model="talker").row()  # untagged: no key at all
    request, skipped = encode([record.row()])
    assert skipped == 0
    (span,) = request.resource_spans[0].scope_spans[0].spans
    assert attributes_of(span)["fmops.tags"] == ["env:prod", "team-a"]
    (row,) = ingest(request.SerializeToString(), PROTOBUF, "proj", "key").rows
    assert row["tags"] == ("env:prod", "team-a")


def test_sqlite_reads_a_tag_filter_from_its_index_without_sorting(tmp_path: Path) -> None:
    """At a million spans, a tag filter must not walk or sort the project's spans: the plan reads
    the (project, tag, start_time) index in order and joins each span by its key. (SQLite's plan is
    fixed by the schema; PostgreSQL plans by its statistics.)"""
    store = Store(migrated_sqlite_url(tmp_path))
    query = TraceQuery(store)
    filters = TraceFilters(tags=("a", "b"), model="m", start=T0)
    statement = query._ordered(PROJECT, filters).where(*query._conditions(PROJECT, filters)).limit(50)
    sql = str(statement.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        plan = " | ".join(row[3] for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
    store.dispose()
    assert plan.startswith("SEARCH span_tags USING COVERING INDEX ix_span_tags_project_tag_start"), plan
    assert "SEARCH spans USING INDEX sqlite_autoindex_spans_1 (project_id=? AND span_id=?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
