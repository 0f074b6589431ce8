"""The quickstart's stages, each driving the public API as a user's script would:

1. register  - prompt `ticket-triage` v1 (rules, schema; labelled production) and endpoint `triage`
2. traffic   - generated tickets through the endpoint (traced), then thumbs and an annotation queue's
               accept/correct decisions from the generator's labels
3. data      - the queue's export as `triage-train`, curated (system prompt distilled, exact and near
               duplicates, PII, decontamination against `triage-eval`, split), with the report
4. finetune  - a LoRA fine-tune with the defaults, served from its merged GGUF by llama.cpp
5. evaluate  - base (v1) and fine-tuned (short prompt) on the held-out `triage-eval`, paired test
6. a/b       - an experiment on `triage`, more traffic with thumbs, promotion when it names a winner

`Loop.run()` returns the `Outcome`; progress goes to a `Reporter` (the CLI's Rich display).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from fmops.quickstart import prompt
from fmops.quickstart.api import JSON, Api
from fmops.quickstart.tickets import Ticket, generate

ENDPOINT = "triage"
TRAIN, EVAL = "triage-train", "triage-eval"
BASE_MODEL = "smollm2-135m-instruct"
SUITE = "ticket-triage"
TRAFFIC_SEED, EVAL_SEED, AB_SEED = 1, 2, 3


@dataclass(frozen=True)
class Sizes:
    traffic: int  # tickets sent before the fine-tune
    eval_cases: int  # held-out tickets both models answer
    ab_calls: int  # calls of the A/B experiment, both variants together
    finetune: JSON = field(default_factory=dict)  # config over the fine-tuning defaults
    concurrency: int = 2


FULL = Sizes(traffic=380, eval_cases=120, ab_calls=80)
# For the test suite: every stage runs end to end, small; the fine-tune is a few steps.
FAST = Sizes(
    traffic=16,
    eval_cases=10,
    ab_calls=12,
    finetune={"max_steps": 8, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1},
)


class Reporter(Protocol):
    def stage(self, name: str, title: str) -> None: ...

    def progress(self, done: int, total: int | None, detail: str = "") -> None: ...

    def note(self, text: str) -> None: ...

    def finish(self, name: str, seconds: float, summary: str) -> None: ...


@dataclass
class Outcome:
    """The run's results, as `--json` prints them (stage times rounded to 0.1 s)."""

    base_model: str = BASE_MODEL
    finetuned_model: str | None = None
    prompt_versions: dict[str, int] = field(default_factory=dict)
    traffic: JSON = field(default_factory=dict)
    annotation_queue: str | None = None
    dataset: str | None = None  # the curated version the fine-tune trained on
    curation: list[JSON] = field(default_factory=list)
    finetune_job: str | None = None
    final_loss: float | None = None
    eval_run: str | None = None
    targets: dict[str, JSON] = field(default_factory=dict)
    comparison: JSON = field(default_factory=dict)
    experiment: JSON = field(default_factory=dict)
    promoted: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    console_url: str | None = None

    def as_json(self) -> JSON:
        return {**asdict(self), "stages": {k: round(v, 1) for k, v in self.stages.items()}}


class Call(NamedTuple):
    """One consumer call through the endpoint: its ticket, the answer, the trace, and whether it is right."""

    ticket: Ticket
    answer: str
    trace_id: str
    right: bool


def parsed(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except ValueError:
        return None


def content_of(answer: JSON) -> str:
    choices = answer.get("choices") or [{}]
    return str((choices[0].get("message") or {}).get("content") or "")


class Loop:
    def __init__(self, api: Api, sizes: Sizes, reporter: Reporter, *, run_id: str | None = None) -> None:
        self.api, self.sizes, self.out = api, sizes, reporter
        self.run_id = run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.result = Outcome()

    @contextmanager
    def _stage(self, name: str, title: str) -> Iterator[list[str]]:
        self.out.stage(name, title)
        started = time.monotonic()
        summary: list[str] = []
        yield summary
        seconds = time.monotonic() - started
        self.result.stages[name] = seconds
        self.out.finish(name, seconds, "; ".join(summary))

    def run(self) -> Outcome:
        steps: list[Callable[[], None]] = [
            self.register,
            self.traffic,
            self.data,
            self.finetune,
            self.evaluate,
            self.experiment,
        ]
        for step in steps:
            step()
        return self.result

    # -- 1 --------------------------------------------------------------------------------------------
    def register(self) -> None:
        with self._stage("register", "Prompt ticket-triage v1 and endpoint triage") as summary:
            pushed = self.api.post("/api/prompts", prompt.spec().model_dump(mode="json", exclude_none=True))
            self.result.prompt_versions["v1"] = pushed["version"]
            body = {"prompt": prompt.NAME, "label": "production", "model": BASE_MODEL}
            if self.api.exists(f"/api/endpoints/{ENDPOINT}"):
                # A second run starts from the base again (the first promoted its fine-tune).
                self.api.patch(f"/api/endpoints/{ENDPOINT}", {**body, "version": None, "variants": []})
            else:
                description = "Support-ticket triage (the quickstart)"
                self.api.post("/api/endpoints", {"name": ENDPOINT, "description": description, **body})
            summary.append(f"prompt {prompt.NAME}@{pushed['version']}, endpoint {ENDPOINT} on {BASE_MODEL}")

    # -- 2 --------------------------------------------------------------------------------------------
    def _send(self, tickets: list[Ticket], user_prefix: str) -> list[Call]:
        """Each ticket through the endpoint as a consumer sends it."""
        done: list[Call] = []

        def call(item: tuple[int, Ticket]) -> Call:
            i, ticket = item
            body = {
                "model": ENDPOINT,
                "messages": [{"role": "user", "content": ticket.text}],
                "user": f"{user_prefix}-{i}",
            }
            answer, trace_id = self.api.chat(body)
            text = content_of(answer)
            return Call(ticket, text, trace_id or "", parsed(text) == ticket.label())

        right = 0
        with ThreadPoolExecutor(self.sizes.concurrency) as pool:
            for row in pool.map(call, enumerate(tickets)):
                done.append(row)
                right += row.right
                self.out.progress(len(done), len(tickets), f"{right}/{len(done)} right")
        return done

    def _wait_traces(self, since: str, count: int) -> None:
        """Spans are written in the background: wait until the calls just made are searchable."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._count_traces(since, count) >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"the gateway's {count} spans were not searchable within 60 s")

    def _count_traces(self, since: str, at_most: int) -> int:
        """The endpoint's root spans since `since`, counted page by page (a page holds 500 at most)."""
        seen, cursor = 0, None
        while seen < at_most:
            limit = min(500, at_most - seen)
            page = self.api.get(
                "/api/traces", endpoint=ENDPOINT, start=since, root_only="true", limit=limit, cursor=cursor
            )
            seen += len(page["data"])
            cursor = page.get("next_cursor")
            if not cursor or not page["data"]:
                break
        return seen

    def _thumbs(self, calls: list[Call]) -> int:
        for call in calls:
            body = {"trace_id": call.trace_id, "kind": "thumbs", "value": 1 if call.right else -1}
            self.api.post("/api/feedback", body)
        return sum(c.right for c in calls)

    def traffic(self) -> None:
        with self._stage(
            "traffic", "Consumers' traffic through the endpoint, annotators' feedback"
        ) as summary:
            since = datetime.now(UTC).isoformat()
            tickets = generate(self.sizes.traffic, TRAFFIC_SEED, split="train")
            calls = self._send(tickets, f"customer-{self.run_id}")
            self._wait_traces(since, len(calls))
            up = self._thumbs(calls)
            by_trace = {c.trace_id: c.ticket for c in calls}
            queue = f"triage-review-{self.run_id}"
            self.api.post(
                "/api/annotation-queues",
                {
                    "name": queue,
                    "description": "The quickstart's traffic: accept right answers, correct wrong ones",
                    "filter": {"endpoint": ENDPOINT, "start": since},
                    "max_items": len(calls),
                    "dataset": TRAIN,
                },
            )
            accepted = corrected = 0
            while (item := self.api.get(f"/api/annotation-queues/{queue}/next")["item"]) is not None:
                ticket = by_trace[item["trace_id"]]
                path = f"/api/annotation-queues/{queue}/items/{item['id']}/decisions"
                if parsed(_output_text(item["output"])) == ticket.label():
                    self.api.post(path, {"action": "accept"})
                    accepted += 1
                else:
                    self.api.post(path, {"action": "correct", "corrected_output": prompt.answer(ticket)})
                    corrected += 1
                self.out.progress(accepted + corrected, len(calls), f"{corrected} corrected")
            self.result.annotation_queue = queue
            self.result.traffic = {
                "calls": len(calls),
                "thumbs_up": up,
                "accepted": accepted,
                "corrected": corrected,
            }
            summary.append(
                f"{len(calls)} calls, {up} thumbs up; "
                f"queue {queue}: {accepted} accepted, {corrected} corrected"
            )

    # -- 3 --------------------------------------------------------------------------------------------
    def _import_eval_set(self) -> str:
        tickets = generate(self.sizes.eval_cases, EVAL_SEED, split="eval")
        lines = [json.dumps({"input": t.text, "expected": t.label()}) for t in tickets]
        files = {"file": ("triage-eval.jsonl", ("\n".join(lines) + "\n").encode(), "application/x-ndjson")}
        data = {"name": EVAL, "kind": "eval", "description": "Held-out generated tickets (the quickstart)"}
        imported = self.api.call("POST", "/api/datasets/import", files=files, data=data)
        return str(imported["version"]["ref"])

    def data(self) -> None:
        with self._stage("data", "Dataset from the corrected traffic, curated") as summary:
            exported = self.api.post(
                f"/api/annotation-queues/{self.result.annotation_queue}/export", {"dataset": TRAIN}
            )
            eval_ref = self._import_eval_set()
            recipe = {
                "steps": [
                    {"system": {"content": prompt.SHORT}},
                    {"dedup": {"method": "exact"}},
                    {"dedup": {"method": "minhash", "threshold": 0.8}},
                    {"pii": {"action": "redact"}},
                    {"decontaminate": {"against": eval_ref, "ngram": 8}},
                    {"split": {"validation": 0.1, "seed": 0}},
                ]
            }
            job = self.api.post(
                f"/api/datasets/{TRAIN}/curate", {"recipe": recipe, "version": exported["version"]}
            )
            state = self.api.wait(
                f"/api/jobs/{job['id']}",
                lambda s: self.out.progress(round(100 * s["progress"]), 100, s["message"] or ""),
            )
            result = state["result"]
            self.result.dataset = result["output"]
            self.result.curation = [_step(v) for v in result["versions"]]
            for row in self.result.curation:
                changes = {**row["removed"], **row["modified"]}
                said = ", ".join(f"{k} {v}" for k, v in changes.items()) or "no change"
                self.out.note(f"    {row['step']:<14} {row['in']:>4} -> {row['out']:<4} {said}")
            first, last = exported["rows"], self.result.curation[-1]["out"] if self.result.curation else 0
            summary.append(
                f"{exported['ref']} ({first} rows) -> {self.result.dataset} ({last} rows); "
                f"eval set {eval_ref}"
            )

    # -- 4 --------------------------------------------------------------------------------------------
    def finetune(self) -> None:
        with self._stage("finetune", "LoRA fine-tune (the defaults), served by llama.cpp") as summary:
            body = {"base": BASE_MODEL, "dataset": self.result.dataset, "config": self.sizes.finetune}
            job = self.api.post("/api/finetunes", body)
            self.result.finetune_job = job["id"]

            def show(state: JSON) -> None:
                train = [e for e in state.get("curve") or [] if e.get("event") == "train"]
                if train:
                    last = train[-1]
                    self.result.final_loss = last.get("loss")
                    self.out.progress(
                        int(last.get("step") or 0), last.get("max_steps"), f"loss {last.get('loss', 0):.4f}"
                    )
                elif state.get("message"):
                    self.out.progress(0, None, str(state["message"]))

            state = self.api.wait(f"/api/finetunes/{job['id']}", show, poll_s=2.0)
            alias = str(state["model"])
            self.result.finetuned_model = alias
            # Served through the gateway like any catalog model.
            ticket = generate(1, EVAL_SEED + 100, split="eval")[0]
            answer, _ = self.api.chat(
                {"model": alias, "messages": prompt.messages(ticket.text, short=True), "temperature": 0}
            )
            summary.append(
                f"{alias} (job {job['id']}, final loss {self.result.final_loss}); "
                f"it answers {content_of(answer)!r}"
            )

    # -- 5 --------------------------------------------------------------------------------------------
    def evaluate(self) -> None:
        with self._stage("evaluate", "Base v1 vs fine-tuned on the held-out tickets") as summary:
            short = self.api.post(
                "/api/prompts", prompt.spec(short=True).model_dump(mode="json", exclude_none=True)
            )
            self.result.prompt_versions["short"] = short["version"]
            versions = self.result.prompt_versions
            suite = triage_suite(
                SUITE, {"dataset": EVAL}, versions, str(self.result.finetuned_model), self.sizes.concurrency
            )
            run = self.api.post("/api/evals/runs", {"suite": suite})
            self.result.eval_run = run["id"]
            total = run["cases"] * run["targets"]

            def show(job: JSON) -> None:
                self.out.progress(round(total * job["progress"]), total, job.get("message") or job["status"])

            # The job, not the run: a job that fails says why (the run would only stay "running").
            self.api.wait(f"/api/jobs/{run['job_id']}", show)
            state = self.api.get(f"/api/evals/runs/{run['id']}")
            self.result.targets = targets_of(state["summary"])
            pairs = self.api.get(f"/api/evals/runs/{run['id']}/compare")
            self.result.comparison = pairs[0] if pairs else {}
            for name, row in self.result.targets.items():
                summary.append(
                    f"{name}: exact match {row['exact_match']:.0%}, valid JSON {row['valid_json']:.0%}"
                )

    # -- 6 --------------------------------------------------------------------------------------------
    def experiment(self) -> None:
        with self._stage("ab", "A/B experiment on triage, promotion") as summary:
            alias = self.result.finetuned_model
            variants = [
                {"name": "base", "weight": 1, "label": "production"},
                {
                    "name": "finetuned",
                    "weight": 1,
                    "version": self.result.prompt_versions["short"],
                    "model": alias,
                },
            ]
            self.api.patch(f"/api/endpoints/{ENDPOINT}", {"variants": variants})
            since = datetime.now(UTC).isoformat()
            calls = self._send(generate(self.sizes.ab_calls, AB_SEED, split="eval"), f"ab-{self.run_id}")
            self._wait_traces(since, len(calls))
            self._thumbs(calls)
            report = self.api.get(f"/api/endpoints/{ENDPOINT}/experiment")
            self.result.experiment = {
                "endpoint": ENDPOINT,
                "started_at": report["started_at"],
                "winner": report["winner"],
                "verdict": report["verdict"],
                "variants": {
                    v["name"]: {"calls": v["calls"], "positive_feedback": v["positive_feedback"]["value"]}
                    for v in report["variants"]
                },
            }
            if report["winner"] == "finetuned":
                note = f"quickstart {self.run_id}: {report['verdict']}"
                self.api.post(
                    f"/api/endpoints/{ENDPOINT}/promote", {"variant": "finetuned", "note": note[:2000]}
                )
                self.result.promoted = True
                summary.append(f"promoted finetuned ({alias}): {report['verdict']}")
            else:
                summary.append(f"not promoted: {report['verdict']}")
            self.result.console_url = f"{self.api.base_url}/console/models/{alias}/loop"


def triage_suite(name: str, cases: Any, versions: dict[str, int], finetuned: str, concurrency: int) -> JSON:
    """Base + prompt v1 against the fine-tune + the one-sentence prompt. Exact match is the score (and
    so what the paired test compares); valid JSON and each field's accuracy are reported beside it."""
    return {
        "name": name,
        "cases": cases,
        "targets": [
            {"name": "base", "model": BASE_MODEL, "prompt": f"{prompt.NAME}@{versions['v1']}"},
            {"name": "finetuned", "model": finetuned, "prompt": f"{prompt.NAME}@{versions['short']}"},
        ],
        "scorers": [
            {"name": "exact_match"},
            {"name": "json_schema", "config": {"schema": prompt.SCHEMA}, "weight": 0},
            {"name": "field_match", "weight": 0},
        ],
        "concurrency": concurrency,
        "seed": 0,
    }


def _output_text(output: Any) -> str:
    """A span's output as text: the message content of a chat answer, or the text itself."""
    if isinstance(output, str):
        return output
    if isinstance(output, dict):
        if isinstance(output.get("content"), str):
            return str(output["content"])
        choices = output.get("choices")
        if isinstance(choices, list) and choices:
            return content_of(output)
    if isinstance(output, list) and output and isinstance(output[-1], dict):
        return str(output[-1].get("content") or "")
    return json.dumps(output)


def _step(version: JSON) -> JSON:
    """A curation job's version as the report shows it: the step, its options, its counts."""
    step = version["step"]
    name, options = next(iter(step.items())) if isinstance(step, dict) and step else (str(step), {})
    return {"step": name, "options": options, "ref": version["ref"], **_counts(version["counts"])}


def _counts(counts: JSON) -> JSON:
    return {
        "in": counts.get("in"),
        "out": counts.get("out"),
        "removed": counts.get("removed") or {},
        "modified": counts.get("modified") or {},
    }


def targets_of(summary: JSON) -> dict[str, JSON]:
    """Per target of an eval run's summary: exact match, valid JSON, field accuracies, with intervals."""
    out: dict[str, JSON] = {}
    for target in summary.get("targets", []):
        scorers = target.get("scorers", {})

        exact, valid, fields = (scorers.get(n) or {} for n in ("exact_match", "json_schema", "field_match"))
        metrics = fields.get("metrics") or {}
        out[target["name"]] = {
            "exact_match": exact.get("mean"),
            "exact_match_ci": exact.get("ci"),
            "valid_json": valid.get("mean"),
            "valid_json_ci": valid.get("ci"),
            "category": metrics.get("field.category"),
            "priority": metrics.get("field.priority"),
            "cases": target.get("cases"),
            "errors": target.get("errors", 0),
        }
    return out
