"""Reading eval results case by case, as the console shows them: the suites with their runs, a run's
cases with every target side by side (filtered to disagreements or failures), and the cases whose
score changed between two runs or two targets.

A case *fails* when a target errored, a scorer could not decide (no value), or a scorer's value is
under its threshold (a scorer without a threshold: a value of 0). Targets *disagree* on a case when
their weighted scores differ or one answered and another errored: the wording of two outputs
nearly always differs, what they are worth is what a reader compares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select

from fmops.store import Store
from fmops.store.models import EvalRun, EvalSuite

Row = Mapping[str, Any]
CaseFilter = Literal["all", "disagreements", "failures"]
FILTERS: tuple[CaseFilter, ...] = ("all", "disagreements", "failures")


@dataclass(frozen=True, slots=True)
class SuiteSeen:
    name: str
    definition: dict[str, Any]
    updated_at: datetime
    runs: int
    last_run: str | None


def suites(store: Store, project_id: str, *, limit: int = 100) -> list[SuiteSeen]:
    """The project's suites (their newest definition), most recently run first, with their run counts."""
    with store.session() as session:
        found = list(
            session.scalars(
                select(EvalSuite)
                .where(EvalSuite.project_id == project_id)
                .order_by(EvalSuite.updated_at.desc())
                .limit(limit)
            )
        )
        counts = {
            name: (int(n), last)
            for name, n, last in session.execute(
                select(EvalRun.suite_name, func.count(), func.max(EvalRun.id))
                .where(EvalRun.project_id == project_id)
                .group_by(EvalRun.suite_name)
            )
        }
    return [
        SuiteSeen(s.name, dict(s.definition), s.updated_at, *counts.get(s.name, (0, None))) for s in found
    ]


def suite_definition(store: Store, project_id: str, name: str) -> dict[str, Any] | None:
    with store.session() as session:
        row = session.scalars(
            select(EvalSuite).where(EvalSuite.project_id == project_id, EvalSuite.name == name)
        ).first()
    return None if row is None else dict(row.definition)


def failing(row: Row, thresholds: Mapping[str, float | None]) -> bool:
    """The target errored on the case, or one of its scorers failed it (see the module docstring)."""
    if row.get("status") != "ok":
        return True
    scores = row.get("scores") or {}
    for name, threshold in thresholds.items():
        verdict = scores.get(name)
        value = verdict.get("value") if isinstance(verdict, dict) else None
        if value is None or value < (threshold if threshold is not None else 1e-12):
            return True
    return False


@dataclass(slots=True)
class CaseView:
    index: int
    input: Any
    expected: Any
    cells: list[Row | None] = field(default_factory=list)  # one per target, None: not run yet
    failing: bool = False
    disagreement: bool = False


def _outcome(row: Row | None) -> tuple[str, float | None] | None:
    if row is None:
        return None
    return (str(row["status"]), None if row.get("score") is None else round(float(row["score"]), 9))


def cases(rows: Sequence[Row], definition: Mapping[str, Any], which: CaseFilter = "all") -> list[CaseView]:
    """A run's results grouped by case (targets in the suite's order), keeping the cases `which` asks for."""
    targets = len(definition["targets"])
    thresholds = {s["name"]: s.get("threshold") for s in definition["scorers"]}
    grouped: dict[int, CaseView] = {}
    for row in rows:
        index = int(row["case_index"])
        view = grouped.get(index)
        if view is None:
            view = grouped[index] = CaseView(index, row.get("input"), row.get("expected"), [None] * targets)
        target = int(row["target_index"])
        if 0 <= target < targets:
            view.cells[target] = row
    found = []
    for view in (grouped[i] for i in sorted(grouped)):
        ran = [c for c in view.cells if c is not None]
        view.failing = any(failing(c, thresholds) for c in ran)
        view.disagreement = len({_outcome(c) for c in ran}) > 1
        if (
            which == "all"
            or (which == "failures" and view.failing)
            or (which == "disagreements" and view.disagreement)
        ):
            found.append(view)
    return found


@dataclass(frozen=True, slots=True)
class Change:
    """A case scored differently by side b than by side a (b - a: positive is better)."""

    input: Any
    expected: Any
    a: Row
    b: Row
    diff: float | None  # None: one side errored


def changes(rows_a: Sequence[Row], target_a: int, rows_b: Sequence[Row], target_b: int) -> list[Change]:
    """The cases both sides ran (paired by content, as `compare_runs` pairs them) whose outcome differs:
    another weighted score, or an answer on one side and an error on the other. Worst regressions first."""
    a = {str(r["case_key"]): r for r in rows_a if int(r["target_index"]) == target_a}
    found = []
    for row in rows_b:
        if int(row["target_index"]) != target_b:
            continue
        other = a.get(str(row["case_key"]))
        if other is None or _outcome(other) == _outcome(row):
            continue
        both = other.get("score") is not None and row.get("score") is not None
        diff = float(row["score"]) - float(other["score"]) if both else None
        found.append(Change(row.get("input"), row.get("expected"), other, row, diff))
    found.sort(key=lambda c: (c.diff is not None, c.diff or 0.0))
    return found


__all__ = [
    "FILTERS",
    "CaseFilter",
    "CaseView",
    "Change",
    "SuiteSeen",
    "cases",
    "changes",
    "failing",
    "suite_definition",
    "suites",
]
