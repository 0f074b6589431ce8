"""The artifact store adapter: atomic writes, keys that cannot escape the root, fsspec URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmops.artifacts import ArtifactStore, check_key
from fmops.settings import load_settings


def test_default_is_a_folder_under_home(tmp_path: Path) -> None:
    settings = load_settings({"home": tmp_path})
    store = ArtifactStore.from_settings(settings)
    assert store.is_local
    assert store.root == str(tmp_path / "artifacts")
    with store.open_write("a/b.bin") as f:
        f.write(b"hello")
    assert (tmp_path / "artifacts" / "a" / "b.bin").read_bytes() == b"hello"
    assert store.size("a/b.bin") == 5
    assert store.keys("a") == ["a/b.bin"]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path.as_uri())
    with store.open_write("x.bin") as f:
        f.write(b"old")

    def crash() -> None:
        with store.open_write("x.bin") as f:
            f.write(b"half of the new")
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
    with store.open_read("x.bin") as f:
        assert f.read() == b"old"


def test_sweep_removes_partials_of_crashed_writers(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path.as_uri())
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "v.parquet.1234abcd.partial").write_bytes(b"x")
    assert store.sweep_partials("d", older_than_seconds=3600) == []
    assert store.sweep_partials("d", older_than_seconds=-1) == ["d/v.parquet.1234abcd.partial"]


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "", "a b", ".hidden"])
def test_keys_cannot_leave_the_root(key: str) -> None:
    with pytest.raises(ValueError, match="invalid artifact key"):
        check_key(key)


def test_any_fsspec_url_works(tmp_path: Path) -> None:
    store = ArtifactStore("memory://fmops-test-artifacts")
    assert not store.is_local
    with store.open_write("datasets/p/v.parquet") as f:
        f.write(b"bytes")
    assert store.exists("datasets/p/v.parquet")
    assert store.keys("datasets") == ["datasets/p/v.parquet"]
    store.delete("datasets/p/v.parquet")
    assert not store.exists("datasets/p/v.parquet")
