"""Eval suites and runs: check a suite against the project, start a run (a job), read results.

A run records what it resolved (lineage): the dataset version id and content hash its cases came
from and the prompt version each target used, so a label that moves later does not change what an
old run means, and a resumed run calls exactly what the first attempt called.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, func, select, update

from fmops.catalog import Catalog
from fmops.endpoints.service import EndpointService
from fmops.errors import Conflict, NotFound, UserError
from fmops.evals.runner import EvalCase
from fmops.evals.suite import Suite, SuiteError, did_you_mean, parse_suite
from fmops.evals.summary import Aggregator, compare_runs, compare_targets, pairwise_summary, summarize
from fmops.evals.targets import Target, TargetResolver
from fmops.jobs import JobService
from fmops.prompts.service import PromptService
from fmops.scorers import Scorer, find_scorer, get_scorer, scorer_names
from fmops.store import Store, utcnow
from fmops.store.models import EvalResult, EvalRun, EvalSuite, Job

if TYPE_CHECKING:  # the datasets package loads pyarrow: only a run that reads a dataset needs it
    from fmops.datasets import DatasetService, VersionInfo

KIND = "evals.run"
PAIRWISE = "judge_pairwise"  # the scorer a suite's `pairwise:` runs
RESULT_COLUMNS = (
    "case_index",
    "target",
    "status",
    "score",
    "output",
    "expected",
    "input",
    "error",
    "latency_ms",
    "cost",
    "input_tokens",
    "output_tokens",
    "cached",
    "trace_id",
)


def case_key(input: Any, expected: Any) -> str:
    raw = orjson.dumps([input, expected], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:32]


def result_dict(row: EvalResult) -> dict[str, Any]:
    return {c.name: getattr(row, c.name) for c in EvalResult.__table__.columns}


def run_dict(run: EvalRun) -> dict[str, Any]:
    return {c.name: getattr(run, c.name) for c in EvalRun.__table__.columns}


class EvalService:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        jobs: JobService,
        datasets: Callable[[], DatasetService],
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.jobs = jobs
        self._datasets = datasets
        self.prompts = PromptService(store, catalog)
        self.targets = TargetResolver(catalog, self.prompts, EndpointService(store, catalog, self.prompts))

    # --- checking and starting ------------------------------------------------------------------

    def check(
        self, project_id: str, raw: str | bytes | Mapping[str, Any]
    ) -> tuple[Suite, list[Target], VersionInfo | None]:
        """The suite, its resolved targets and its dataset version; one SuiteError with every problem."""
        suite, problems = parse_suite(raw)
        version = self._dataset(project_id, suite, problems)
        targets = self.targets.resolve(project_id, suite, problems)
        self._check_scorers(project_id, suite, problems)
        self._check_pairwise(project_id, suite, problems)
        if problems:
            raise SuiteError(problems)
        return suite, targets, version

    def _dataset(self, project_id: str, suite: Suite, problems: list[str]) -> VersionInfo | None:
        if suite.dataset is None:
            return None
        datasets = self._datasets()
        try:
            version = datasets.resolve(project_id, suite.dataset)
        except NotFound as exc:
            name = suite.dataset.partition("@")[0]
            known = [d.name for d in datasets.list_datasets(project_id)]
            hint = did_you_mean(name, known) if name not in known else ""
            problems.append(f"cases.dataset: {exc.message}{hint}")
            return None
        except UserError as exc:
            problems.append(f"cases.dataset: {exc.message}")
            return None
        if version.kind.value != "eval":
            problems.append(
                f"cases.dataset: {version.ref} holds {version.kind.value} records; an eval dataset "
                "(input, expected, metadata) is needed: import it with --kind eval"
            )
            return None
        return version

    def _check_scorers(self, project_id: str, suite: Suite, problems: list[str]) -> None:
        models = None
        for i, spec in enumerate(suite.scorers):
            where = f"scorers.{i}"
            cls = find_scorer(spec.name)
            if cls is None:
                hint = did_you_mean(spec.name, scorer_names())
                problems.append(f"{where}.name: no scorer {spec.name!r}{hint}")
                continue
            try:
                config = cls.parse_config(spec.config)
            except UserError as exc:
                problems.append(f"{where}: {exc.message}")
                continue
            for alias in cls(config).models_used():
                models = models if models is not None else self.catalog.models(project_id)
                if alias not in models:
                    problems.append(
                        f"{where}.config: scorer {spec.name!r} calls model {alias!r}, "
                        f"which is not in this project{did_you_mean(alias, models)}"
                    )

    def _check_pairwise(self, project_id: str, suite: Suite, problems: list[str]) -> None:
        if suite.pairwise is None:
            return
        cls = find_scorer(PAIRWISE)
        if cls is None:
            problems.append(f"pairwise: the {PAIRWISE} scorer is not installed")
            return
        try:
            config = cls.parse_config(suite.pairwise["config"])
        except UserError as exc:
            problems.append(f"pairwise.{exc.message}")
            return
        models = self.catalog.models(project_id)
        for alias in cls(config).models_used():
            if alias not in models:
                problems.append(
                    f"pairwise.config.model: no model {alias!r} in this project{did_you_mean(alias, models)}"
                )

    def start(
        self,
        project_id: str,
        raw: str | bytes | Mapping[str, Any],
        *,
        created_by_key_id: str | None,
        concurrency: int | None = None,
        member_user_id: str | None = None,
    ) -> EvalRun:
        """Check the suite, record the run and queue its `evals.run` job (nothing on a problem).

        `member_user_id`: a member signed in with a password, who has no key; the run calls models
        as them, with their role at the time it runs, and `created_by_key_id` is their session's."""
        if not created_by_key_id:
            raise UserError("an eval run calls models as a key: start it with one")
        suite, targets, version = self.check(project_id, raw)
        if concurrency is not None:
            if not 1 <= concurrency <= 256:
                raise UserError("concurrency: a whole number from 1 to 256", param="concurrency")
            suite = replace(suite, concurrency=concurrency)
        pinned = [
            replace(t.spec, prompt_ref=str(t.prompt_version)) if t.prompt_version is not None else t.spec
            for t in targets
        ]
        ran = replace(suite, targets=pinned, dataset=version.id if version is not None else None)
        definition: dict[str, Any] = {
            "suite": ran.as_dict(),
            "dataset": None
            if version is None
            else {"id": version.id, "ref": version.ref, "content_hash": version.content_hash},
            "targets": [
                {"name": t.name, "kind": t.spec.kind, "model": t.model, "prompt_version": t.prompt_version}
                for t in targets
            ],
        }
        if member_user_id:
            definition["member"] = member_user_id
        with self.store.write() as session:
            row = session.scalars(
                select(EvalSuite).where(EvalSuite.project_id == project_id, EvalSuite.name == suite.name)
            ).first()
            if row is None:
                row = EvalSuite(project_id=project_id, name=suite.name)
                session.add(row)
            row.definition, row.content_hash, row.updated_at = suite.as_dict(), suite.content_hash(), utcnow()
            session.flush()
            run = EvalRun(
                project_id=project_id,
                suite_id=row.id,
                suite_name=suite.name,
                definition=definition,
                status="queued",
                cases=version.rows if version is not None else len(suite.cases or []),
                targets=len(targets),
                created_by_key_id=created_by_key_id,
            )
            session.add(run)
        return self.queue(run)

    def queue(self, run: EvalRun) -> EvalRun:
        """Queue a job for the run (a new run, or one to resume: it skips the results it has)."""
        job = self.jobs.submit(
            KIND, {"run_id": run.id}, project_id=run.project_id, created_by_key_id=run.created_by_key_id
        )
        with self.store.write() as session:
            stored = session.get(EvalRun, run.id)
            assert stored is not None
            stored.job_id, stored.status, stored.error = job.id, "queued", None
        return self.get_run(run.project_id, run.id)

    def resume(self, project_id: str, run_id: str) -> EvalRun:
        run = self.get_run(project_id, run_id)
        if run.definition.get("harness"):
            raise Conflict(f"run {run_id} is an lm-evaluation-harness task: run `fmops eval harness` again")
        if run.status == "succeeded":
            raise Conflict(f"run {run_id} already finished; start a new run instead")
        if run.job_id is not None:
            job = self.jobs.get(run.job_id, project_id)
            if job.status in ("queued", "running"):
                if not job.cancel_requested:
                    raise Conflict(f"run {run_id} is {job.status} (job {job.id}); wait for it or cancel it")
                # Cancelled, but its worker is gone (`fmops eval run` stopped with Ctrl-C): close it here.
                with self.store.session() as session:
                    session.execute(
                        update(Job)
                        .where(Job.id == job.id, Job.status.in_(("queued", "running")))
                        .values(status="cancelled", finished_at=utcnow(), worker_id=None, message="cancelled")
                    )
        return self.queue(run)

    # --- the run as the job sees it --------------------------------------------------------------

    def cases(self, project_id: str, definition: Mapping[str, Any]) -> list[EvalCase]:
        suite = definition["suite"]
        if suite.get("dataset"):
            datasets = self._datasets()
            version = datasets.get(project_id, suite["dataset"])
            records = [r for batch in datasets.iter_records(version) for r in batch]
        else:
            records = list(suite.get("cases") or [])
        return [
            EvalCase(
                i,
                case_key(r.get("input"), r.get("expected")),
                r.get("input"),
                r.get("expected"),
                r.get("metadata") or {},
            )
            for i, r in enumerate(records)
        ]

    def resolve_targets(self, project_id: str, definition: Mapping[str, Any]) -> list[Target]:
        suite = Suite.from_dict(definition["suite"])
        problems: list[str] = []
        targets = self.targets.resolve(project_id, suite, problems)
        if problems:
            raise SuiteError(problems)
        return targets

    @staticmethod
    def build_scorers(
        definition: Mapping[str, Any], chat: Callable[[str], Any]
    ) -> list[tuple[Any, Scorer[Any]]]:
        suite = Suite.from_dict(definition["suite"])
        built = []
        for spec in suite.scorers:
            cls = get_scorer(spec.name)
            config = cls.parse_config(spec.config)
            built.append((spec, cls(config, chat=chat(spec.name) if cls.needs_model else None)))
        return built

    def done(self, run_id: str) -> set[tuple[int, int]]:
        with self.store.session() as session:
            return {
                (int(c), int(t))
                for c, t in session.execute(
                    select(EvalResult.case_index, EvalResult.target_index).where(EvalResult.run_id == run_id)
                )
            }

    def set_status(self, run_id: str, status: str, **values: Any) -> None:
        # A write session (SQLite: BEGIN IMMEDIATE): read then update in a deferred transaction fails at
        # once with "database is locked" when the run's trace writer committed in between.
        with self.store.write() as session:
            run = session.get(EvalRun, run_id)
            if run is not None:
                run.status = status
                for name, value in values.items():
                    setattr(run, name, value)
                if status in ("succeeded", "failed", "cancelled"):
                    run.finished_at = utcnow()

    def finish(self, run_id: str, pairwise: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Summarise the stored results (and the pairwise verdicts), record it, mark the run succeeded."""
        run = self.get_run(None, run_id)
        suite = run.definition["suite"]
        summary = summarize(self.rows(run_id), suite, aggregators(run.definition))
        if pairwise is not None and suite.get("pairwise"):
            summary["pairwise"] = pairwise_summary(pairwise, suite["pairwise"], int(suite.get("seed", 0)))
        self.set_status(run_id, "succeeded", summary=summary, error=None)
        return summary

    # --- reads -----------------------------------------------------------------------------------

    def get_run(self, project_id: str | None, run_id: str) -> EvalRun:
        with self.store.session() as session:
            run = session.get(EvalRun, run_id)
        if run is None or (project_id is not None and run.project_id != project_id):
            raise NotFound(f"no eval run {run_id!r} in this project", param="run_id")
        return run

    def list_runs(self, project_id: str, *, limit: int = 50, before: str | None = None) -> list[EvalRun]:
        query = (
            select(EvalRun).where(EvalRun.project_id == project_id).order_by(EvalRun.id.desc()).limit(limit)
        )
        if before is not None:
            query = query.where(EvalRun.id < before)
        with self.store.session() as session:
            return list(session.scalars(query))

    def rows(self, run_id: str) -> list[dict[str, Any]]:
        """Every result of the run as a dict of its columns, case by case, each target in order."""
        # Core rows, not ORM objects: a summary and an export read them once and never write them.
        table = EvalResult.__table__
        with self.store.session() as session:
            results = session.execute(
                select(table)
                .where(table.c.run_id == run_id)
                .order_by(table.c.case_index, table.c.target_index)
            )
            return [dict(r._mapping) for r in results]

    def results(
        self,
        project_id: str,
        run_id: str,
        *,
        status: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of a run's results (case by case, each target in order) and how many there are."""
        self.get_run(project_id, run_id)
        query = select(EvalResult).where(EvalResult.run_id == run_id)
        counted = select(func.count()).select_from(EvalResult).where(EvalResult.run_id == run_id)
        if status is not None:
            query, counted = (
                query.where(EvalResult.status == status),
                counted.where(EvalResult.status == status),
            )
        with self.store.session() as session:
            total = int(session.scalar(counted) or 0)
            page = session.scalars(
                query.order_by(EvalResult.case_index, EvalResult.target_index).offset(offset).limit(limit)
            )
            return [result_dict(r) for r in page], total

    def summary(self, project_id: str, run_id: str) -> dict[str, Any]:
        """The stored summary; for a run still going (or interrupted), computed from what is stored."""
        run = self.get_run(project_id, run_id)
        if run.summary is not None:
            return dict(run.summary)
        return summarize(self.rows(run_id), run.definition["suite"], aggregators(run.definition))

    def compare(self, project_id: str, run_a: str, run_b: str | None = None) -> list[dict[str, Any]]:
        """Two runs target by target (b against a), or one run's targets against each other."""
        a = self.get_run(project_id, run_a)
        if run_b is None:
            return compare_targets(self.rows(a.id), a.definition["suite"])
        b = self.get_run(project_id, run_b)
        return compare_runs(self.rows(a.id), a.definition["suite"], self.rows(b.id), b.definition["suite"])

    def export(self, project_id: str, run_id: str, fmt: str) -> str:
        """The run's results as CSV (one row per case × target, a column per scorer) or JSON."""
        run = self.get_run(project_id, run_id)
        names = [t["name"] for t in run.definition["suite"]["targets"]]
        scorer_names = [s["name"] for s in run.definition["suite"]["scorers"]]
        rows = self.rows(run_id)
        if fmt == "json":
            payload = {"run": run_dict(run), "results": rows}
            return orjson.dumps(payload, default=str, option=orjson.OPT_INDENT_2).decode()
        if fmt != "csv":
            raise UserError(f"unknown export format {fmt!r}: csv or json", param="format")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*RESULT_COLUMNS, *scorer_names])
        for row in rows:
            plain = {**row, "target": names[row["target_index"]]}
            cells = [_cell(plain.get(c)) for c in RESULT_COLUMNS]
            cells += [_cell((row["scores"].get(s) or {}).get("value")) for s in scorer_names]
            writer.writerow(cells)
        return out.getvalue()

    def delete_run(self, project_id: str, run_id: str) -> None:
        run = self.get_run(project_id, run_id)
        with self.store.write() as session:
            session.execute(delete(EvalResult).where(EvalResult.run_id == run.id))
            session.execute(delete(EvalRun).where(EvalRun.id == run.id))


def aggregators(definition: Mapping[str, Any]) -> dict[str, Aggregator]:
    """The run-level metric of each of the suite's scorers that has its own (`aggregates`)."""
    found: dict[str, Aggregator] = {}
    for spec in definition["suite"]["scorers"]:
        cls = find_scorer(spec["name"])
        if cls is not None and cls.aggregates:
            found[spec["name"]] = cls(cls.parse_config(spec.get("config"))).aggregate
    return found


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


__all__ = ["KIND", "EvalService", "case_key"]
