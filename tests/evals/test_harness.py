"""lm-evaluation-harness tasks against a gateway model: the real `lm_eval` package, its
`local-chat-completions` client calling fmops over HTTP (a server started in-process), offline,
on a small task whose data is a local JSON file; the scores land as an eval run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from fmops.cli import app
from fmops.errors import Conflict, UserError
from fmops.evals.harness import Harness, HarnessOptions, load_tasks
from fmops.server.inprocess import serving
from fmops.store.models import Span, SpanTag
from support.gateway import add_models, cli_in_process, openai_model
from support.mock_upstream import MockUpstream

REPLY = "Hello from the mock upstream."  # what the mock's model m1 answers
DOCS = [
    {"question": "Say hello", "answer": REPLY},
    {"question": "Capital of France?", "answer": "Paris"},
    {"question": "Two plus two?", "answer": "4"},
]
TASK = """
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {output_type}
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
{extra}
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
metadata:
  version: 2.0
"""
GENERATE = 'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 16'


def task_folder(root: Path) -> Path:
    folder = root / "tasks"
    folder.mkdir(exist_ok=True)
    data = folder / "tiny_qa.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / "tiny_qa.yaml").write_text(
        TASK.format(name="tiny_qa", data=data, output_type="generate_until", extra=GENERATE)
    )
    (folder / "tiny_mc.yaml").write_text(
        TASK.format(name="tiny_mc", data=data, output_type="multiple_choice", extra="doc_to_choice: [a, b]")
    )
    (folder / "tiny_hub.yaml").write_text(
        TASK.format(name="tiny_hub", data=data, output_type="generate_until", extra=GENERATE).replace(
            "dataset_path: json", "dataset_path: someone/not-on-this-machine"
        )
    )
    return folder


def test_a_local_task_runs_through_the_gateway_and_lands_as_an_eval_run(world, tmp_path: Path) -> None:
    folder = task_folder(tmp_path)
    tasks = load_tasks(["tiny_qa"], folder)
    assert os.environ["HF_DATASETS_OFFLINE"] == os.environ["HF_HUB_OFFLINE"] == "1"
    harness = Harness(world.evals)
    run = harness.start(
        world.project, world.principal.key_id, "tiny_qa", tasks["tiny_qa"], "mock-a", HarnessOptions()
    )
    assert (run.status, run.suite_name, run.cases, run.targets) == ("running", "harness:tiny_qa", 3, 1)
    key = (world.platform.settings.home / "admin.key").read_text().strip()
    with serving(world.platform.settings) as url:
        summary = harness.execute(
            run, "tiny_qa", tasks["tiny_qa"], base_url=url, api_key=key, options=HarnessOptions()
        )

    # The harness's own figures: exact match on one document of three, with its standard error.
    metric = summary["harness"]["metrics"]["exact_match"]
    assert metric["value"] == pytest.approx(1 / 3)
    assert metric["stderr"] == pytest.approx((1 / 3 * 2 / 3 / 2) ** 0.5)  # sample std / sqrt(n)
    assert summary["harness"]["n_samples"]["effective"] == 3
    [target] = summary["targets"]
    assert (target["name"], target["ok"], target["errors"]) == ("mock-a", 3, 0)
    assert target["scorers"]["exact_match"]["mean"] == pytest.approx(1 / 3)
    assert target["score"]["mean"] == pytest.approx(1 / 3)

    # Every call went to the upstream as lm_eval built it: the chat prompt, the task's stop and length.
    sent = [r["body"] for r in world.mock.state.requests]
    assert len(sent) == 3
    assert sorted(b["messages"][-1]["content"] for b in sent) == sorted(
        f"Question: {d['question']}\nAnswer:" for d in DOCS
    )
    assert all(b["stop"] == ["\n"] and b["max_tokens"] == 16 and b["seed"] == 0 for b in sent)

    # The run reads like any run: results per document, each linked to its traced, tagged call.
    stored = world.evals.get_run(world.project, run.id)
    assert stored.status == "succeeded"
    assert [s["name"] for s in stored.definition["suite"]["scorers"]] == ["exact_match"]
    rows = world.evals.rows(run.id)
    assert [r["output"] for r in rows] == [REPLY] * 3
    assert [r["scores"]["exact_match"]["value"] for r in rows] == [1.0, 0.0, 0.0]
    assert [r["expected"] for r in rows] == [d["answer"] for d in DOCS]
    assert rows[1]["input"][-1] == {"role": "user", "content": "Question: Capital of France?\nAnswer:"}
    with world.platform.store.session() as session:
        tagged = list(
            session.scalars(
                select(Span)
                .join(SpanTag, (SpanTag.span_id == Span.span_id) & (SpanTag.project_id == Span.project_id))
                .where(SpanTag.tag == f"eval-run:{run.id}")
            )
        )
    assert len(tagged) == 3
    assert all(s.key_id == world.principal.key_id and s.model == "mock-a" for s in tagged)
    assert {r["trace_id"] for r in rows} == {s.trace_id for s in tagged}
    assert all(r["latency_ms"] is not None and r["cost"] is not None for r in rows)
    assert run.id in [r.id for r in world.evals.list_runs(world.project)]
    assert world.evals.export(world.project, run.id, "csv").splitlines()[0].endswith(",exact_match")
    with pytest.raises(Conflict, match="fmops eval harness"):
        world.evals.resume(world.project, run.id)


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        (["tiny_qaa"], "no task 'tiny_qaa' (did you mean 'tiny_qa'?)"),
        (["tiny_mc"], "is a multiple_choice task"),
        (["tiny_hub"], "cannot load its data offline"),
    ],
)
def test_tasks_that_cannot_run_are_refused_before_any_call(
    tmp_path: Path, names: list[str], fragment: str
) -> None:
    with pytest.raises(UserError) as caught:
        load_tasks(names, task_folder(tmp_path))
    assert fragment in caught.value.message


def test_an_include_path_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a folder"):
        load_tasks(["tiny_qa"], tmp_path / "nowhere")


def test_an_unknown_model_is_refused(world, tmp_path: Path) -> None:
    tasks = load_tasks(["tiny_qa"], task_folder(tmp_path))
    with pytest.raises(UserError, match="no model 'mock-c'"):
        Harness(world.evals).start(
            world.project, world.principal.key_id, "tiny_qa", tasks["tiny_qa"], "mock-c", HarnessOptions()
        )


def run_cli(home: Path, args: list[str]) -> Result:
    """`fmops ARGS` in this process: lm_eval and datasets are loaded here already, and a new process
    would spend seconds importing them again."""
    with cli_in_process(home):
        return CliRunner().invoke(app, args)


def test_cli_runs_a_task_and_eval_show_reads_it(tmp_path: Path, mock: MockUpstream) -> None:
    home = tmp_path / "home"
    home.mkdir()
    add_models(home, {"mock-a": openai_model("m1", mock.url)})
    folder = task_folder(tmp_path)
    mock.reset()
    args = ["eval", "harness", "--tasks", "tiny_qa", "--model", "mock-a", "--include-path", str(folder)]
    done = run_cli(home, [*args, "--limit", "2", "--json"])
    assert done.exit_code == 0, done.output
    [out] = json.loads(done.stdout)
    assert out["run"]["suite"] == "harness:tiny_qa"
    assert out["run"]["status"] == "succeeded"
    assert out["summary"]["harness"]["metrics"]["exact_match"]["value"] == 0.5
    assert len(mock.state.requests) == 2
    shown = run_cli(home, ["eval", "show", out["run"]["id"]])
    assert shown.exit_code == 0, shown.output
    assert "harness:tiny_qa" in shown.stdout
    assert "exact_match" in shown.stdout
