"""The datasets API on a real server, on both backends: multipart import (detection, bad rows by
line, unknown formats, bad names, the body limit), list/show/versions, row pages with search,
diffs, lineage, JSONL and Parquet export, delete; roles and projects kept apart."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from support.databases import postgres_database
from support.server import RunningServer, start_server

LIMIT = 256 * 1024  # the server's body limit in these tests


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


ROWS = [{"instruction": f"say {i}", "input": "", "output": f"{i}!", "topic": "numbers"} for i in range(120)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp(f"datasets-{request.param}")
    env = {"FMOPS_WORKERS": "0", "FMOPS_MAX_BODY_BYTES": str(LIMIT)}
    if request.param == "sqlite":
        with start_server(home, env) as running:
            yield running
    else:
        with postgres_database() as url, start_server(home, {**env, "FMOPS_DATABASE_URL": url}) as running:
            yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def key(admin: httpx.Client, **body: Any) -> str:
    response = admin.post("/api/keys", json={"name": f"k-{uuid.uuid4().hex[:8]}", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def upload(client: httpx.Client, filename: str, content: bytes, **form: str) -> httpx.Response:
    return client.post("/api/datasets/import", files={"file": (filename, content)}, data=form)


def test_import_read_page_diff_export_delete(admin: httpx.Client) -> None:
    first = upload(admin, "alpaca.jsonl", jsonl(ROWS), name="numbers")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["detection"] == "format jsonl, shape alpaca -> chat records"
    assert (body["created"], body["version"]["rows"], body["version"]["ref"]) == (True, 120, "numbers@1")
    assert body["version"]["source"] == {
        "type": "import",
        "file": "alpaca.jsonl",
        "format": "jsonl",
        "shape": "alpaca",
    }
    again = upload(admin, "alpaca.jsonl", jsonl(ROWS), name="numbers")
    assert (again.status_code, again.json()["version"]["id"]) == (200, body["version"]["id"])
    second = upload(admin, "alpaca.jsonl", jsonl(ROWS[10:]), name="numbers", description="fewer")
    assert second.status_code == 201, second.text

    [listed] = [d for d in admin.get("/api/datasets").json() if d["name"] == "numbers"]
    assert (listed["kind"], listed["latest_version"], listed["rows"], listed["description"]) == (
        "chat",
        2,
        110,
        "fewer",
    )
    assert [v["version"] for v in admin.get("/api/datasets/numbers/versions").json()] == [2, 1]
    assert admin.get("/api/datasets/numbers/versions/latest").json()["rows"] == 110

    page = admin.get("/api/datasets/numbers/versions/1/rows", params={"offset": 100, "limit": 30}).json()
    assert (page["total"], page["has_more"], [r["row"] for r in page["rows"]][:2]) == (120, False, [100, 101])
    assert len(page["rows"]) == 20
    record = page["rows"][0]["record"]
    assert record["messages"] == [
        {"role": "user", "content": "say 100"},
        {"role": "assistant", "content": "100!"},
    ]
    assert record["metadata"] == {"topic": "numbers"}
    found = admin.get("/api/datasets/numbers/versions/1/rows", params={"search": "SAY 11", "limit": 3}).json()
    assert ([r["row"] for r in found["rows"]], found["total"], found["has_more"]) == (
        [11, 110, 111],
        None,
        True,
    )

    diff = admin.get("/api/datasets/numbers/versions/2/diff", params={"other": "1", "examples": 2}).json()
    assert (diff["added"], diff["removed"], diff["unchanged"]) == (0, 10, 110)
    assert diff["removed_examples"][0]["messages"][0]["content"] == "say 0"
    lineage = admin.get("/api/datasets/numbers/versions/2/lineage").json()
    assert [v["ref"] for v in lineage] == ["numbers@2"]

    exported = admin.get("/api/datasets/numbers/versions/2/export")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == 'attachment; filename="numbers-2.jsonl"'
    lines = [json.loads(x) for x in exported.text.splitlines()]
    assert len(lines) == 110
    assert lines[0] == {
        "messages": [{"role": "user", "content": "say 10"}, {"role": "assistant", "content": "10!"}]
    }
    parquet = admin.get("/api/datasets/numbers/versions/1/export", params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == 120
    assert json.loads(table.column("metadata")[0].as_py()) == {"topic": "numbers"}

    deleted = admin.delete("/api/datasets/numbers")
    assert deleted.status_code == 200, deleted.text
    assert admin.get("/api/datasets/numbers").status_code == 404


def test_every_format_the_api_takes(admin: httpx.Client) -> None:
    csv = b"prompt,completion\n2+2=,4\n3+3=,6\n"
    made = upload(admin, "pc.csv", csv, name="arith", kind="eval")
    assert made.status_code == 201, made.text
    assert made.json()["detection"] == "format csv, shape prompt_completion -> eval records"
    pref = upload(
        admin,
        "p.data",
        jsonl([{"prompt": "hi", "chosen": "hello", "rejected": "go"}]),
        name="pref",
        format="jsonl",
    )
    assert pref.status_code == 201, pref.text
    assert pref.json()["version"]["kind"] == "preference"


def test_bad_input_is_a_400_that_says_what_to_fix(admin: httpx.Client) -> None:
    rows = jsonl(ROWS[:3]) + b'{"instruction": "no output"}\n' + b"\xff\xfe\n" + jsonl(ROWS[3:5])
    refused = upload(admin, "bad.jsonl", rows, name="bad")
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "line 4: missing required field 'output'" in message
    assert "line 5: not valid UTF-8" in message
    assert admin.get("/api/datasets/bad").status_code == 404  # nothing kept
    skipped = upload(admin, "bad.jsonl", rows, name="bad", on_error="skip")
    assert skipped.status_code == 201, skipped.text
    assert (skipped.json()["skipped"], skipped.json()["version"]["rows"]) == (2, 5)
    assert skipped.json()["version"]["counts"] == {"in": 7, "out": 5, "skipped": 2}
    for filename, form, fragment in [
        ("data.xlsx", {"name": "x"}, "cannot tell the format of data.xlsx"),
        ("a.jsonl", {"name": "../../etc"}, "name"),
        ("a.jsonl", {"name": "ok", "kind": "poem"}, "kind"),
        ("a.jsonl", {"name": "ok", "on_error": "maybe"}, "on_error"),
    ]:
        response = upload(admin, filename, jsonl(ROWS[:1]), **form)
        assert response.status_code == 400, response.text
        assert fragment in response.text
    too_big = upload(admin, "big.jsonl", jsonl(ROWS) * 200, name="big")
    assert too_big.status_code == 413
    assert "FMOPS_MAX_BODY_BYTES" in too_big.json()["error"]["message"]
    assert admin.get("/api/datasets/big").status_code == 404
    assert admin.get("/api/datasets/bad/versions/9").status_code == 404
    assert admin.get("/api/datasets/bad/versions/x").status_code == 400
    assert admin.get("/api/datasets/bad/versions/1/rows", params={"limit": 5000}).status_code == 400


def test_engineers_only_and_projects_apart(server: RunningServer, admin: httpx.Client) -> None:
    assert upload(admin, "mine.jsonl", jsonl(ROWS[:2]), name="mine").status_code == 201
    with server.client(key(admin, role="consumer")) as consumer:
        assert consumer.get("/api/datasets").status_code == 403
        assert upload(consumer, "c.jsonl", jsonl(ROWS[:2]), name="c").status_code == 403
    other = f"p{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/projects", json={"name": other}).status_code == 201
    with server.client(key(admin, project=other, role="engineer")) as outsider:
        assert outsider.get("/api/datasets").json() == []
        assert outsider.get("/api/datasets/mine").status_code == 404
        assert outsider.get("/api/datasets/mine/versions/1/rows").status_code == 404
        assert outsider.delete("/api/datasets/mine").status_code == 404
    assert admin.get("/api/datasets/mine").status_code == 200
