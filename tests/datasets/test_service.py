"""The dataset service on both backends: versions streamed to Parquet in the artifact store, content
hashes, re-creating the newest version as a no-op, lineage, pages, search, diffs, deletion, and a
failed write leaving nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmops.artifacts import ArtifactStore
from fmops.datasets import DatasetService, RecordKind
from fmops.datasets.parquet import ROW_GROUP_ROWS
from fmops.errors import Conflict, NotFound, UserError
from fmops.store import Store, new_id


def chat(i: int, answer: str = "fine") -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"question {i}: how are you?"},
            {"role": "assistant", "content": f"{answer} {i}"},
        ],
        "metadata": {"n": i},
    }


def batches(records: list[dict[str, Any]], size: int = 100) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


@pytest.fixture
def service(store: Store, tmp_path: Path) -> DatasetService:
    return DatasetService(store, ArtifactStore((tmp_path / "artifacts").as_uri()))


@pytest.fixture
def project() -> str:
    return new_id()


def test_versions_stream_to_parquet_and_read_back(service: DatasetService, project: str) -> None:
    records = [chat(i) for i in range(250)]
    v1 = service.create_version(
        project_id=project,
        name="support",
        kind=RecordKind.chat,
        batches=batches(records),
        source={"type": "import", "file": "a.jsonl", "format": "jsonl"},
    )
    assert (v1.version, v1.rows, v1.kind, v1.ref) == (1, 250, RecordKind.chat, "support@1")
    assert service.artifacts.exists(v1.path)
    assert v1.size_bytes > 0
    assert v1.path == f"datasets/{project}/{v1.id}.parquet"
    read = [r for batch in service.iter_records(v1, batch_size=64) for r in batch]
    assert read == [{**r, "tools": None} for r in records]
    only = next(service.iter_records(v1, columns=["metadata"]))
    assert only[0] == {"metadata": {"n": 0}}
    assert service.resolve(project, "support") == v1
    assert service.resolve(project, "support@1") == v1
    assert service.resolve(project, v1.id) == v1
    assert service.get(project, v1.id) == v1


def test_same_records_and_lineage_reuse_the_newest_version(service: DatasetService, project: str) -> None:
    records = [chat(i) for i in range(10)]
    source = {"type": "import", "file": "a.jsonl", "format": "jsonl"}
    v1 = service.create_version(project_id=project, name="d", kind="chat", batches=[records], source=source)
    again = service.create_version(
        project_id=project, name="d", kind="chat", batches=[records], source=source
    )
    assert again.id == v1.id
    assert again.reused
    assert len(service.artifacts.keys("datasets")) == 1  # the second file was thrown away
    # Same records, other lineage: a new version with the same content hash.
    child = service.create_version(
        project_id=project,
        name="d",
        kind="chat",
        batches=[records],
        parent_id=v1.id,
        step={"dedup": {"method": "exact"}},
        counts={"in": 10, "out": 10},
    )
    assert child.version == 2
    assert child.content_hash == v1.content_hash
    assert not child.reused
    changed = service.create_version(
        project_id=project, name="d", kind="chat", batches=[records[:9]], parent_id=child.id
    )
    assert changed.content_hash != v1.content_hash
    assert [v.id for v in service.lineage(project, changed.id)] == [changed.id, child.id, v1.id]
    assert [v.id for v in service.children(project, v1.id)] == [child.id]
    assert [v.version for v in service.list_versions(project, "d")] == [3, 2, 1]
    [listed] = service.list_datasets(project)
    assert (listed.name, listed.kind, listed.latest_version, listed.rows) == ("d", RecordKind.chat, 3, 9)


def test_every_kind_round_trips(service: DatasetService, project: str) -> None:
    cases: dict[RecordKind, dict[str, Any]] = {
        RecordKind.completion: {"prompt": "2+2=", "completion": "4", "metadata": {}},
        RecordKind.preference: {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hello!"}],
            "rejected": [{"role": "assistant", "content": "go away"}],
            "metadata": {"split": "train"},
        },
        RecordKind.eval: {"input": "capital of France?", "expected": {"answer": "Paris"}, "metadata": {}},
        RecordKind.chat: {
            "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "sunny"}],
            "tools": [{"type": "function", "function": {"name": "weather"}}],
            "metadata": {"trace_id": "abc"},
        },
    }
    for kind, record in cases.items():
        version = service.create_version(project_id=project, name=f"k-{kind}", kind=kind, batches=[[record]])
        assert service.read_page(version, 0, 10) == [record]


def test_pages_read_only_the_row_groups_they_need(service: DatasetService, project: str) -> None:
    rows = ROW_GROUP_ROWS * 2 + 7
    version = service.create_version(
        project_id=project,
        name="big",
        kind="completion",
        batches=batches([{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(rows)], 1000),
    )
    page = service.page(version, ROW_GROUP_ROWS - 2, 5)  # spans two row groups
    assert [i for i, _ in page.rows] == list(range(ROW_GROUP_ROWS - 2, ROW_GROUP_ROWS + 3))
    assert page.rows[0][1]["prompt"] == f"p{ROW_GROUP_ROWS - 2}"
    assert page.has_more
    assert page.total == rows
    last = service.page(version, rows - 3, 10)
    assert [r["completion"] for _, r in last.rows] == [f"c{i}" for i in range(rows - 3, rows)]
    assert not last.has_more
    assert service.page(version, rows + 5, 10).rows == []
    # Search is a filter; the row numbers are those of the version.
    hits = service.page(version, 0, 3, search="P100")
    assert [i for i, _ in hits.rows] == [100, 1000, 1001]
    assert hits.has_more
    assert service.page(version, 2, 3, search="p999").rows[0][0] == 9991  # 999, 9990, then this
    assert service.page(version, 0, 10, search="nowhere").rows == []
    with pytest.raises(UserError):
        service.page(version, -1, 10)


def test_search_finds_text_that_json_escapes(service: DatasetService, project: str) -> None:
    record = {"messages": [{"role": "user", "content": 'he said "ça va?"\nand left'}]}
    version = service.create_version(project_id=project, name="esc", kind="chat", batches=[[record]])
    assert len(service.read_page(version, 0, 5, search='"ÇA VA?"\nand')) == 1


def test_diff_counts_added_and_removed_records(service: DatasetService, project: str) -> None:
    a = service.create_version(
        project_id=project, name="x", kind="chat", batches=[[chat(i) for i in range(20)]]
    )
    b = service.create_version(
        project_id=project,
        name="x",
        kind="chat",
        batches=[[chat(i) for i in range(5, 20)] + [chat(i, "new") for i in range(3)]],
        parent_id=a.id,
    )
    diff = service.diff(project, "x@1", "x@2")
    assert (diff.added, diff.removed, diff.unchanged) == (3, 5, 15)
    assert diff.added_examples[0]["messages"][1]["content"] == "new 0"
    assert diff.removed_examples[0]["metadata"] == {"n": 0}
    assert service.diff(project, b.id, b.id).added == 0
    empty = service.create_version(project_id=project, name="x", kind="chat", batches=[], parent_id=b.id)
    assert empty.rows == 0
    to_empty = service.diff(project, b.id, empty.id)
    assert (to_empty.added, to_empty.removed, to_empty.unchanged) == (0, 18, 0)


def test_bad_records_names_and_kinds_are_refused_and_nothing_is_kept(
    service: DatasetService, project: str
) -> None:
    good = [chat(i) for i in range(3)]
    with pytest.raises(UserError, match="record 5: missing required field 'messages'"):
        service.create_version(
            project_id=project, name="bad", kind="chat", batches=[good, [chat(9), {"prompt": "x"}]]
        )
    with pytest.raises(UserError, match="invalid dataset name"):
        service.create_version(project_id=project, name="../etc", kind="chat", batches=[good])
    with pytest.raises(ValueError, match="unknown record kind"):
        service.create_version(project_id=project, name="ok", kind="poem", batches=[good])
    assert service.artifacts.keys("datasets") == []
    assert service.list_datasets(project) == []
    service.create_version(project_id=project, name="ok", kind="chat", batches=[good])
    with pytest.raises(Conflict, match="holds chat records"):
        service.create_version(
            project_id=project, name="ok", kind="completion", batches=[[{"prompt": "a", "completion": "b"}]]
        )
    with pytest.raises(NotFound):
        service.create_version(project_id=project, name="ok", kind="chat", batches=[good], parent_id=new_id())


def test_a_crash_mid_write_leaves_no_version_and_no_file(service: DatasetService, project: str) -> None:
    def exploding() -> Iterator[list[dict[str, Any]]]:
        yield [chat(i) for i in range(ROW_GROUP_ROWS + 10)]
        raise RuntimeError("killed mid-import")

    with pytest.raises(RuntimeError):
        service.create_version(project_id=project, name="crash", kind="chat", batches=exploding())
    assert service.artifacts.keys("datasets") == []
    with pytest.raises(NotFound):
        service.resolve(project, "crash")


def test_sweep_removes_orphans_and_delete_removes_files(service: DatasetService, project: str) -> None:
    version = service.create_version(project_id=project, name="keep", kind="chat", batches=[[chat(1)]])
    with service.artifacts.open_write(f"datasets/{project}/{new_id()}.parquet") as f:
        f.write(b"orphan of a crash between the file and its row")
    assert service.sweep(older_than_seconds=3600) == []  # too young: could be a write in progress
    [removed] = service.sweep(older_than_seconds=-1)
    assert removed.endswith(".parquet")
    assert removed != version.path
    assert service.artifacts.exists(version.path)
    service.delete_dataset(project, "keep")
    assert not service.artifacts.exists(version.path)
    with pytest.raises(NotFound):
        service.resolve(project, version.id)


def test_other_projects_see_nothing(service: DatasetService, project: str) -> None:
    version = service.create_version(project_id=project, name="mine", kind="chat", batches=[[chat(1)]])
    other = new_id()
    for ref in ("mine", "mine@1", version.id):
        with pytest.raises(NotFound):
            service.resolve(other, ref)
    with pytest.raises(NotFound):
        service.lineage(other, version.id)
    with pytest.raises(NotFound, match="has no version 7"):
        service.resolve(project, "mine@7")
    with pytest.raises(UserError, match="invalid version"):
        service.resolve(project, "mine@x")


def test_concurrent_versions_of_a_new_dataset_number_in_turn(service: DatasetService, project: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create(i: int) -> int:
        return service.create_version(
            project_id=project, name="race", kind="chat", batches=[[chat(i), chat(i + 100)]]
        ).version

    with ThreadPoolExecutor(4) as pool:
        numbers = sorted(pool.map(create, range(6)))
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert len(service.artifacts.keys("datasets")) == 6
