"""Helpers for the local-engine provider tests."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest


class _MakesAFolder:
    """Unpickling this creates a folder: proof that a loader executed a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def pickled_weights(tmp_path: Path) -> tuple[bytes, Path]:
    """Bytes of a "checkpoint" that, if unpickled, creates the returned marker path."""
    marker = tmp_path / "the-pickle-ran"
    return pickle.dumps(_MakesAFolder(marker)), marker
