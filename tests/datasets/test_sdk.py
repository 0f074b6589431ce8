"""`client.datasets` against a real server: import a file, list, show, head, diff, lineage, export
to JSONL and Parquet, delete; server errors arrive as the SDK's typed errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import fmops
from fmops.sdk.errors import BadRequestError, NotFoundError
from support.server import RunningServer, start_server


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real server (SQLite; the SDK does not care which backend), without job workers."""
    with start_server(tmp_path_factory.mktemp("sdk-datasets"), {"FMOPS_WORKERS": "0"}) as running:
        yield running


def test_import_read_diff_export_delete(api: RunningServer, tmp_path: Path) -> None:
    source = tmp_path / "conversations.jsonl"
    turns = [
        {"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": f"hello {i}"}]}
        for i in range(8)
    ]
    source.write_text("".join(json.dumps(t) + "\n" for t in turns))
    with fmops.Client(api.url, api.admin_key) as client:
        imported = client.datasets.import_file(source, name="greetings")
        assert imported.detection == "format jsonl, shape sharegpt -> chat records"
        assert (imported.created, imported.version.ref, imported.version.rows) == (True, "greetings@1", 8)
        assert client.datasets.import_file(source, name="greetings").created is False
        source.write_text("".join(json.dumps(t) + "\n" for t in turns[:5]))
        second = client.datasets.import_file(source, name="greetings", description="shorter")
        assert second.version.version == 2

        [listed] = client.datasets.list()
        assert (listed.name, listed.kind, listed.latest_version, listed.rows) == ("greetings", "chat", 2, 5)
        assert [v.version for v in client.datasets.versions("greetings")] == [2, 1]
        assert client.datasets.show("greetings@1").rows == 8
        assert client.datasets.show(("greetings", 2)).id == second.version.id
        assert [v.ref for v in client.datasets.lineage("greetings")] == ["greetings@2"]
        head = client.datasets.head("greetings@1", n=2, offset=6)
        assert [r["messages"][0]["content"] for r in head] == ["hi 6", "hi 7"]
        assert len(client.datasets.head("greetings@1", search="HELLO 7")) == 1
        diff = client.datasets.diff("greetings@2", 1)
        assert (diff.added, diff.removed, diff.unchanged) == (0, 3, 5)

        out = client.datasets.export("greetings@1", tmp_path / "train.jsonl")
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert lines[0] == {
            "messages": [{"role": "user", "content": "hi 0"}, {"role": "assistant", "content": "hello 0"}]
        }
        parquet = client.datasets.export("greetings", tmp_path / "train.parquet", format="parquet")
        assert pq.read_table(parquet).num_rows == 5

        with pytest.raises(NotFoundError):
            client.datasets.show("nope")
        with pytest.raises(NotFoundError):
            client.datasets.export("nope", tmp_path / "nope.jsonl")
        assert not (tmp_path / "nope.jsonl").exists()
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text": "no known shape"}\n')
        with pytest.raises(BadRequestError, match="cannot tell the records' shape"):
            client.datasets.import_file(bad, name="bad")
        assert client.datasets.delete("greetings").name == "greetings"
        assert client.datasets.list() == []
