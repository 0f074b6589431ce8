"""lm-evaluation-harness tasks against a gateway model, recorded as eval runs.

`fmops eval harness --tasks NAME --model ALIAS` loads the task with the real `lm_eval` package
(`pip install 'fmops[harness]'`) and has its `local-chat-completions` model call the fmops gateway
over the OpenAI API, as a key: limits, budgets and tracing apply like to any client, and each call
carries the tag `eval-run:<run id>` (`metadata.tags`), so `fmops traces search --tag eval-run:RUN`
lists them. The harness's per-sample metrics become the run's results (one case per document, one
target, a scorer per metric), so `fmops eval list|show|compare|export` read it like any run; the
harness's own aggregates (with its standard errors) are kept in the summary's `harness` section.

Offline by design: the Hugging Face hub is switched off (`HF_DATASETS_OFFLINE`, `HF_HUB_OFFLINE`)
before `datasets` loads, and requests go as text (no tokenizer: `tokenizer_backend=None`). A task
runs when its data is on this machine: a task YAML with `dataset_path: json` and
`dataset_kwargs: {data_files: ...}`, or a dataset already in the local Hugging Face cache.

Only `generate_until` tasks run: loglikelihood and multiple-choice tasks need the log-probabilities
of the prompt's tokens, which a chat-completions API does not return.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import and_, select

from fmops.errors import NotFound, UserError
from fmops.evals.runner import RUN_TAG_PREFIX, EvalCase, result_row
from fmops.evals.service import EvalService, case_key
from fmops.evals.suite import did_you_mean
from fmops.evals.summary import summarize
from fmops.store.models import EvalResult, EvalRun, Span, SpanTag

if TYPE_CHECKING:
    from lm_eval.api.task import Task

log = logging.getLogger(__name__)
SUITE_PREFIX = "harness:"
GENERATE = "generate_until"
INSTALL = "pip install 'fmops[harness]'"
JSON = dict[str, Any]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class HarnessOptions:
    limit: float | None = None  # documents per task (a fraction under 1)
    num_fewshot: int | None = None
    concurrency: int = 4
    max_gen_toks: int = 256
    seed: int = 0
    timeout_s: int = 300


def offline() -> None:
    """Nothing comes from the hub at run time: set before `datasets` and `huggingface_hub` load."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "1"
    # Already loaded (a long-lived process): they read the variables at import, so tell them too.
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]
        datasets_config.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def _lm_eval() -> Any:
    offline()
    try:
        import lm_eval
    except ImportError:
        raise UserError(f"lm-evaluation-harness is not installed: {INSTALL}") from None
    return lm_eval


def load_tasks(names: list[str], include_path: Path | None) -> dict[str, Task]:
    """The tasks by name (a group or tag gives its tasks), checked: known, local data, generate_until."""
    _lm_eval()
    from lm_eval.tasks import TaskManager

    if include_path is not None and not include_path.is_dir():
        raise UserError(f"--include-path {include_path} is not a folder", param="include_path")
    # A folder of the user's tasks is indexed alone when it has them all (indexing the thousands of
    # built-in task files takes seconds); otherwise the built-in tasks are searched too.
    manager = TaskManager(include_path=str(include_path), include_defaults=False) if include_path else None
    if manager is None or any(n not in manager.all_tasks for n in names):
        manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        problems = [f"no task {n!r}{did_you_mean(n, manager.all_tasks)}" for n in unknown]
        raise UserError("; ".join(problems) + " (add your own with --include-path DIR)", param="tasks")
    found: dict[str, Task] = {}
    for name in names:
        try:
            loaded = manager.load([name])
        except Exception as exc:  # datasets' errors for a missing file or an offline hub vary
            raise UserError(
                f"task {name!r} cannot load its data offline ({type(exc).__name__}: {exc}); fmops runs "
                "tasks whose data is on this machine: `dataset_path: json` with "
                "`dataset_kwargs: {data_files: ...}`, or a dataset in the Hugging Face cache",
                param="tasks",
            ) from None
        found.update(loaded["tasks"])  # a group's or a tag's tasks, flat
    for task_name, task in found.items():
        kind = task.OUTPUT_TYPE
        if kind != GENERATE:
            raise UserError(
                f"task {task_name!r} is a {kind} task: it needs the log-probabilities of the prompt's "
                f"tokens, which a chat-completions API does not return; only {GENERATE} tasks run here",
                param="tasks",
            )
    return found


def gateway_model(model: str, base_url: str, api_key: str, tag: str, options: HarnessOptions) -> Any:
    """lm_eval's `local-chat-completions` model, pointed at the gateway, each call tagged with the run."""
    _lm_eval()
    from lm_eval.models.openai_completions import LocalChatCompletion

    class GatewayChat(LocalChatCompletion):  # type: ignore[misc]
        def _create_payload(self, *args: Any, **kwargs: Any) -> JSON:
            payload: JSON = super()._create_payload(*args, **kwargs)
            payload["metadata"] = {"tags": tag}  # OpenAI's metadata: the gateway tags the span
            return payload

    return GatewayChat(
        model=model,
        base_url=base_url.rstrip("/") + "/v1/chat/completions",
        tokenizer_backend=None,
        tokenized_requests=False,
        num_concurrent=options.concurrency,
        max_gen_toks=options.max_gen_toks,
        seed=options.seed,
        timeout=options.timeout_s,
        max_retries=3,
        header={"Authorization": f"Bearer {api_key}"},
    )


def _metric_name(key: str) -> str:
    """lm_eval's "metric,filter" as a scorer name: the metric alone for the default filter."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name in ("", "none") else key


def _messages(context: Any) -> Any:
    """A request's prompt as fmops stores inputs: the chat messages when they are JSON."""
    text = getattr(context, "prompt", context)
    if isinstance(text, str):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        return parsed if isinstance(parsed, list) else text
    return text


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
        return float(value)
    return None


def _key(messages: Any) -> bytes:
    if isinstance(messages, list):
        pairs = [[m.get("role"), m.get("content")] for m in messages if isinstance(m, dict)]
        return orjson.dumps(pairs)
    return orjson.dumps(messages)


class Harness:
    """Start a harness task as an eval run, run it against the gateway, store its results."""

    def __init__(self, evals: EvalService) -> None:
        self.evals = evals
        self.store = evals.store

    def start(
        self, project_id: str, key_id: str, task_name: str, task: Task, model: str, options: HarnessOptions
    ) -> EvalRun:
        models = self.evals.catalog.models(project_id)
        if model not in models:
            raise NotFound(f"no model {model!r} in this project{did_you_mean(model, models)}", param="model")
        docs = len(list(task.eval_docs))
        cases = docs if options.limit is None else _limited(docs, options.limit)
        suite = {
            "name": f"{SUITE_PREFIX}{task_name}",
            "description": f"lm-evaluation-harness task {task_name}",
            "targets": [{"name": model, "model": model, "parameters": {}}],
            "scorers": [],  # the task's metrics, once the harness reports them
            "cases": None,
            "dataset": None,
            "concurrency": options.concurrency,
            "seed": options.seed,
            "pairwise": None,
        }
        harness = {
            "task": task_name,
            "version": task.VERSION,
            "config": orjson.loads(orjson.dumps(task.dump_config(), default=str)),
            "limit": options.limit,
            "num_fewshot": options.num_fewshot,
            "max_gen_toks": options.max_gen_toks,
        }
        run = EvalRun(
            project_id=project_id,
            suite_id=None,
            suite_name=suite["name"],
            definition={"suite": suite, "dataset": None, "targets": [], "harness": harness},
            status="running",
            cases=cases,
            targets=1,
            created_by_key_id=key_id,
        )
        with self.store.write() as session:
            session.add(run)
        return self.evals.get_run(project_id, run.id)

    def execute(
        self,
        run: EvalRun,
        task_name: str,
        task: Task,
        *,
        base_url: str,
        api_key: str,
        options: HarnessOptions,
    ) -> dict[str, Any]:
        """Run the task against the gateway at `base_url`, store its results; the run's summary."""
        lm_eval = _lm_eval()
        from lm_eval.tasks import TaskManager

        model = run.definition["suite"]["targets"][0]["model"]
        tag = f"{RUN_TAG_PREFIX}{run.id}"
        started = time.perf_counter()
        try:
            lm = gateway_model(model, base_url, api_key, tag, options)
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=[task],
                # The task is loaded already; without a manager of its own, simple_evaluate indexes
                # the thousands of built-in task files again (~5 s of CPU) only to pass it through.
                task_manager=TaskManager(include_defaults=False),
                num_fewshot=options.num_fewshot,
                limit=options.limit,
                log_samples=True,
                apply_chat_template=True,
                bootstrap_iters=1000,
                random_seed=options.seed,
                numpy_random_seed=options.seed,
                torch_random_seed=options.seed,
                fewshot_random_seed=options.seed,
            )
        except BaseException as exc:
            self.evals.set_status(run.id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        if out is None:
            self.evals.set_status(run.id, "failed", error="the harness returned no results")
            raise UserError("the harness returned no results")
        name = next(iter(out["results"]))  # one task per run
        return self.finish(run, name, out, seconds=time.perf_counter() - started)

    def finish(self, run: EvalRun, name: str, out: Mapping[str, Any], *, seconds: float) -> dict[str, Any]:
        results: JSON = dict(out["results"][name])
        metrics = [k for k in results if "," in k and "_stderr," not in k]
        scorers = [_metric_name(k) for k in metrics]
        rows = self._rows(run, out.get("samples", {}).get(name, []), scorers)
        self._link_traces(run, rows)
        definition = dict(run.definition)
        suite = dict(definition["suite"])
        # The task's first metric is the run's score; the others are reported beside it.
        suite["scorers"] = [
            {"name": s, "config": {}, "weight": 1.0 if i == 0 else 0.0, "threshold": None}
            for i, s in enumerate(scorers)
        ]
        definition["suite"] = suite
        with self.store.write() as session:
            stored = session.get(EvalRun, run.id)
            assert stored is not None
            stored.definition = definition
            stored.cases = len(rows)
            if rows:
                session.add_all(EvalResult(**row) for row in rows)
        summary = summarize(rows, suite)
        harness_metrics = {
            _metric_name(k): {
                "value": _number(results[k]),
                "stderr": _number(results.get(k.replace(",", "_stderr,", 1))),
            }
            for k in metrics
        }
        for target in summary["targets"]:
            for scorer, agg in target["scorers"].items():
                official = harness_metrics.get(scorer, {})
                # A corpus metric (BLEU...) has no per-document values: the harness's figure stands.
                if agg["mean"] is None and official.get("value") is not None:
                    agg["mean"] = official["value"]
                agg["harness"] = official
        n_samples = (out.get("n-samples") or {}).get(name, {})
        summary["harness"] = {
            "task": name,
            "metrics": harness_metrics,
            "higher_is_better": (out.get("higher_is_better") or {}).get(name, {}),
            "n_samples": n_samples,
            "n_shot": (out.get("n-shot") or {}).get(name),
            "version": (out.get("versions") or {}).get(name),
            "lm_eval_version": _version(),
            "seconds": round(seconds, 3),
        }
        self.evals.set_status(run.id, "succeeded", summary=summary, error=None)
        return summary

    def _rows(self, run: EvalRun, samples: list[JSON], scorers: list[str]) -> list[JSON]:
        by_doc: dict[int, JSON] = {}
        for sample in samples:  # one per document and filter
            doc_id = int(sample["doc_id"])
            row = by_doc.get(doc_id)
            if row is None:
                args = sample.get("arguments") or [[None]]
                prompt = _messages(args[0][0] if args and args[0] else None)
                resps = sample.get("resps") or [[None]]
                output = resps[0][0] if resps and resps[0] else None
                target = sample.get("target")
                expected = orjson.loads(orjson.dumps(target, default=str))
                case = EvalCase(doc_id, case_key(prompt, expected), prompt, expected)
                row = by_doc[doc_id] = result_row(run.id, case, 0, status="ok")
                row["output"] = None if output is None else str(output)
            suffix = "" if sample.get("filter") in (None, "none") else f",{sample['filter']}"
            for metric in sample.get("metrics") or []:
                value = _number(sample.get(metric))
                if value is None:
                    continue  # a corpus metric's per-document item (BLEU's pair), not a score
                scorer = metric + suffix
                row["scores"][scorer] = {"value": value, "label": None, "comment": None}
        for row in by_doc.values():
            first = row["scores"].get(scorers[0]) if scorers else None
            row["score"] = None if first is None else first["value"]
        return [by_doc[i] for i in sorted(by_doc)]

    def _link_traces(self, run: EvalRun, rows: list[JSON], wait_s: float = 5.0) -> None:
        """Each result's call (trace, latency, cost, tokens): the run's tagged spans, matched to the
        documents by their messages. A running server writes spans within ~50 ms: wait for them."""
        tag = f"{RUN_TAG_PREFIX}{run.id}"
        query = (
            select(Span)
            .join(
                SpanTag,
                and_(SpanTag.project_id == Span.project_id, SpanTag.span_id == Span.span_id),
            )
            .where(SpanTag.project_id == run.project_id, SpanTag.tag == tag, Span.parent_span_id.is_(None))
        )
        deadline = time.monotonic() + wait_s
        while True:
            with self.store.session() as session:
                spans = list(session.scalars(query))
            if len(spans) >= len(rows) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        by_messages: dict[bytes, list[Span]] = {}
        for span in spans:
            messages = (span.input or {}).get("messages") if isinstance(span.input, dict) else None
            by_messages.setdefault(_key(messages), []).append(span)
        for row in rows:
            found = by_messages.get(_key(row["input"]))
            if found:
                span = found.pop()
                row.update(
                    trace_id=span.trace_id,
                    latency_ms=span.latency_ms,
                    cost=span.cost,
                    input_tokens=span.input_tokens,
                    output_tokens=span.output_tokens,
                )


def _limited(docs: int, limit: float) -> int:
    return min(docs, int(limit * docs) if limit < 1 else int(limit))


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


__all__ = ["GENERATE", "SUITE_PREFIX", "Harness", "HarnessOptions", "gateway_model", "load_tasks", "offline"]
