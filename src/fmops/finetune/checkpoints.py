"""Where a run's checkpoints are, without loading the training libraries."""

from __future__ import annotations

from pathlib import Path

__all__ = ["last_checkpoint"]


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint: a worker killed while saving leaves one without its state."""
    if not output_dir.is_dir():
        return None
    found = []
    for path in output_dir.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return max(found)[1] if found else None
