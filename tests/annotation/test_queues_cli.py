"""`fmops queues` and `fmops data from-traces`: the real console script on a home with known traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmops.auth import AuthService
from fmops.gateway.spans import new_span_id, new_trace_id
from fmops.store import Store, upgrade, utcnow
from fmops.store.models import Score, Span
from support.cli_runs import Outcome, run_session, session_env

QUESTIONS = ["Where is my parcel?", "Why was I charged twice?", "Can I pay by invoice?"]


def _home(home: Path) -> None:
    """The server's home: three support calls, the second corrected by a person."""
    store = Store(f"sqlite:///{home / 'fmops.db'}")
    try:
        upgrade(store)
        AuthService(store).bootstrap(home / "admin.key")
        project = AuthService(store).list_projects()[0][0].id
        with store.session() as session:
            for i, question in enumerate(QUESTIONS):
                trace = new_trace_id()
                session.add(
                    Span(
                        span_id=new_span_id(),
                        trace_id=trace,
                        project_id=project,
                        name="chat small",
                        start_time=utcnow(),
                        model="small",
                        endpoint="support",
                        input={"messages": [{"role": "user", "content": question}]},
                        output={"role": "assistant", "content": f"answer {i}"},
                        attributes={},
                    )
                )
                if i == 1:
                    session.add(
                        Score(
                            project_id=project,
                            trace_id=trace,
                            name="correction",
                            kind="correction",
                            corrected_output={"role": "assistant", "content": "Refunded."},
                            source="human",
                        )
                    )
    finally:
        store.dispose()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    home = tmp_path_factory.mktemp("queues-cli")
    _home(home)
    return run_session(
        session_env(home, columns=160),
        [
            ["queues", "create", "review", "--endpoint", "support", "--label", "topic=billing,shipping"],
            ["queues", "list", "--json"],
            ["queues", "show", "review"],
            ["queues", "export", "review"],
            ["queues", "create", "bad", "--label", "topic"],
            ["data", "from-traces", "sft", "--endpoint", "support"],
            ["data", "from-traces", "fixed", "--corrected-only"],
            ["data", "from-traces", "prefs", "--preference"],
            ["data", "from-traces", "none", "--model", "nope"],
            ["queues", "delete", "review"],
            ["queues", "show", "review"],
        ],
    )


def test_queues_create_list_show_and_refuse_bad_input(runs: list[Outcome]) -> None:
    assert "created queue review" in runs[0].ok()
    assert ": 3 items" in runs[0].ok()
    [listed] = json.loads(runs[1].ok())
    assert (listed["name"], listed["items"], listed["done"], listed["remaining"]) == ("review", 3, 0, 3)
    shown = runs[2].ok()
    assert '{"endpoint":"support"}' in shown
    assert "topic: billing, shipping" in shown
    assert "0/3 done, 0 skipped, 3 remaining" in shown
    assert "nothing to export" in runs[3].error_line()
    assert "use NAME=VALUE1,VALUE2" in runs[4].error_line()
    assert "deleted queue review" in runs[9].ok()
    assert "no annotation queue 'review'" in runs[10].error_line()


def test_data_from_traces_prints_the_new_version(runs: list[Outcome]) -> None:
    sft = runs[5].ok()
    assert "sft@1" in sft
    assert '"type":"traces"' in sft
    assert "3 traces with a chat example, 1 corrected, 3 records" in sft
    assert "fixed@1" in runs[6].ok()
    assert "1 records" in runs[6].ok()
    assert "preference" in runs[7].ok()
    assert "no chat traces match the filter" in runs[8].error_line()
