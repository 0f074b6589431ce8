"""FMOPS_EXECUTOR=ray on a real Ray cluster (`ray start --head` on 127.0.0.1, one for the module):
a curation recipe, an eval run and a tiny fine-tune give what the local executor gives, and their
work ran in the cluster's processes, not this one. PostgreSQL, as a cluster's workers would use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from finetune.tiny import chat_records, make_tiny_model
from fmops.artifacts import ArtifactStore
from fmops.auth import AuthService
from fmops.curation import StepContext, StepReport, runner, steps
from fmops.datasets import DatasetService
from fmops.datasets.records import RecordKind
from fmops.evals.job import execute
from fmops.executors import Channel, make_executor
from fmops.executors.ray_cluster import RayExecutor
from fmops.jobs import JobCancelled, JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.platform import Platform
from fmops.settings import Settings, load_settings
from fmops.store import Store
from fmops.store.models import EvalCache, Finetune, Job, SpanTag
from support.curation_data import chat, source_of
from support.mock_upstream import MockUpstream
from support.server import free_port

POSTGRES = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
RECIPE = {
    "steps": [
        {"dedup": {"method": "exact"}},
        {"pii": {"action": "redact"}},
        {"filter": {"min_chars": 30, "drop_refusals": True}},
        {"system": {"content": "Triage the ticket."}},
        {"split": {"validation": 0.25, "seed": 0}},
    ]
}


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A one-node cluster with 2 CPUs, joined at 127.0.0.1:port as FMOPS_RAY_ADDRESS would be; stopped
    (its whole process group) afterwards."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="fmray", dir="/tmp")  # Ray's socket paths must stay short
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--object-store-memory=200000000",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115 (closed below)
    # No usage reports (Ray Data would ask a Prometheus on localhost:9090 after each run), and the
    # node stops at once instead of draining for 30 s.
    quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    saved = {name: os.environ.get(name) for name in quiet}
    os.environ.update(quiet)
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in (Path(temp) / "head.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((Path(temp) / "head.log").read_text())
            time.sleep(0.2)
        yield address
    finally:
        import ray

        ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the node's processes
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def on_ray(settings: Settings, address: str) -> Settings:
    return settings.model_copy(update={"executor": "ray", "ray_address": address})


def run_job(store: Store, settings: Settings, kind: str, params: dict[str, Any], project: str) -> Job:
    return run_queued(store, settings, JobService(store).submit(kind, params, project_id=project))


def run_queued(store: Store, settings: Settings, job: Job) -> Job:
    """Claim a queued job and run it here, as a worker does; it must succeed."""
    service = JobService(store)
    worker = Worker(service, settings, threading.Event())
    claimed = service.claim(worker.worker_id, [job.kind])
    assert claimed is not None
    assert claimed.id == job.id
    worker.execute(claimed)
    done = service.get(job.id, None)
    assert done.status == JobStatus.succeeded, (done.error, [log.line for log in service.logs(job.id, None)])
    return done


def eval_world(platform: Platform, mock: MockUpstream) -> Any:
    """The default project's admin key, and `mock-a` on the mock upstream (priced, so calls cost)."""
    from evals.conftest import EvalWorld

    key = platform.auth.bootstrap(platform.settings.home / "admin.key")
    assert key is not None
    world = EvalWorld(platform, platform.auth.authenticate(key), mock)
    mock.reset()
    world.add_model("mock-a", input_price=1.0, output_price=2.0)
    return world


class Pids:
    """Spies on the Ray executor: the process each piece of work ran in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[int] = []
        pids = self.seen
        real_map, real_tasks, real_train = RayExecutor.map, RayExecutor.tasks, RayExecutor.train

        def map_(self: RayExecutor, fn: Callable[[Any], Any], items: Any, *, window: int = 16) -> Any:
            def tagged(item: Any) -> tuple[int, Any]:
                return os.getpid(), fn(item)

            for pid, result in real_map(self, tagged, items, window=window):
                pids.append(pid)
                yield result

        def tasks(self: RayExecutor, fn: Callable[..., Any], calls: Any, **options: Any) -> list[Any]:
            def tagged(*args: Any) -> tuple[int, Any]:
                return os.getpid(), fn(*args)

            results = real_tasks(self, tagged, calls, **options)
            pids.extend(pid for pid, _ in results)
            return [result for _, result in results]

        def train(self: RayExecutor, loop: Any, config: dict[str, Any], **options: Any) -> None:
            def tagged(config: dict[str, Any], channel: Channel) -> Any:
                channel.send({"type": "pid", "pid": os.getpid()})
                return loop(config, channel)

            on_message = options.pop("on_message")

            def seen(message: dict[str, Any]) -> None:
                if message["type"] == "pid":
                    pids.append(int(message["pid"]))
                else:
                    on_message(message)

            real_train(self, tagged, config, on_message=seen, **options)

        monkeypatch.setattr(RayExecutor, "map", map_)
        monkeypatch.setattr(RayExecutor, "tasks", tasks)
        monkeypatch.setattr(RayExecutor, "train", train)

    def elsewhere(self) -> bool:
        return bool(self.seen) and os.getpid() not in self.seen


def test_a_per_batch_step_run_batch_by_batch_reports_what_one_pass_reports() -> None:
    records = [chat(f"mail me at user{i}@example.com about ticket {i}") for i in range(7)]
    records += [chat("hi"), chat("I can't help", "I'm sorry, but I cannot help with that.")]
    for name, options in [
        ("pii", {"action": "redact"}),
        ("filter", {"min_chars": 30, "drop_refusals": True}),
    ]:
        cls = steps()[name]
        step = cls(cls.Options.model_validate(options))
        ctx = StepContext(RecordKind.chat, "p", len(records))
        whole = StepReport(name)
        kept = [r for b in step.run(source_of(records, 100), ctx, whole) for r in b]
        merged = StepReport(name)
        pieces: list[dict[str, Any]] = []
        for batch in source_of(records, 2)():
            part_kept, part = runner.run_batch(runner.PlannedStep(name, step), ctx, batch)
            pieces.extend(part_kept)
            merged.merge(part)
        assert pieces == kept
        assert merged.to_dict() == whole.to_dict()


@POSTGRES
def test_curation_on_ray_makes_the_versions_the_local_executor_makes(
    store: Store, tmp_path: Path, ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "BATCH_RECORDS", 4)  # several batches a step: their reports merge
    settings = load_settings({"home": tmp_path / "home", "database_url": store.url})
    project = AuthService(store).create_project("curate").id
    datasets = DatasetService(store, ArtifactStore.from_settings(settings))
    records = [chat(f"ticket {i}: my card 4111 1111 1111 1111 was charged for order {i}") for i in range(10)]
    records += [chat(f"ticket {i}: call me on +1 415 555 01{i:02d}, the app crashes") for i in range(10)]
    records += [*records[:3], chat("short"), chat("please help with my login", "As an AI, I cannot.")]
    start = datasets.create_version(project_id=project, name="tickets", kind="chat", batches=[records])
    params = {"dataset": start.id, "recipe": RECIPE}  # both runs start here (not at the newest)

    local = run_job(store, settings, "datasets.curate", params, project).result
    pids = Pids(monkeypatch)
    remote = run_job(store, on_ray(settings, ray_address), "datasets.curate", params, project).result

    assert local is not None
    assert remote is not None
    assert pids.elsewhere()  # pii, filter and system ran in the cluster's workers
    assert len(pids.seen) >= 3 * 5  # pii, filter, system: a piece of work each batch (of 4)
    assert [v["counts"] for v in remote["versions"]] == [v["counts"] for v in local["versions"]]
    for mine, theirs in zip(local["versions"], remote["versions"], strict=True):
        a, b = datasets.get(project, mine["id"]), datasets.get(project, theirs["id"])
        assert a.id != b.id
        assert list(datasets.iter_records(b)) == list(datasets.iter_records(a))
        assert b.report == a.report
    assert local["versions"][1]["counts"]["modified"] == {"redact": 20}


@POSTGRES
def test_batch_inference_on_ray_writes_the_records_the_local_executor_writes(
    platform: Platform, mock: MockUpstream, ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmops.datasets import infer as batch
    from fmops.prompts.schemas import PromptSpec
    from fmops.prompts.service import PromptService

    world = eval_world(platform, mock)
    prompts = PromptService(platform.store, platform.catalog)
    spec = PromptSpec(
        name="triage",
        model="mock-a",
        messages=[
            {"role": "system", "content": "Triage {{ product }} tickets."},
            {"role": "user", "content": "{{ input }}"},
        ],
    )
    view, _ = prompts.push(world.project, spec, author="t", author_key_id=None)
    prompts.set_label(world.project, "triage", "production", view.version, actor="t")
    # Every third record names no product: the prompt cannot be filled, on either executor.
    records = [
        {
            "messages": [{"role": "user", "content": f"ticket {i}"}],
            "metadata": {"product": "card"} if i % 3 else {},
        }
        for i in range(10)
    ]
    platform.datasets.create_version(project_id=world.project, name="tickets", kind="chat", batches=[records])
    monkeypatch.setattr(batch, "CHUNK_RECORDS", 4)  # three chunks: three pieces of work on the cluster
    pids = Pids(monkeypatch)
    made = []

    def submit(settings: Settings, dataset: str, **options: Any) -> Job:
        return batch.submit(
            platform.store,
            settings,
            platform.jobs,
            platform.datasets,
            project_id=world.project,
            dataset=dataset,
            created_by_key_id=world.principal.key_id,
            **options,
        )

    for settings in (platform.settings, on_ray(platform.settings, ray_address)):
        options = {"prompt": "triage@production", "parameters": {"temperature": 0}}
        job = submit(settings, "tickets@1", output=f"answers-{settings.executor}", **options)
        done = run_queued(platform.store, settings, job)
        assert done.result is not None
        made.append((job.id, done.result))
    assert pids.elsewhere()
    assert len(pids.seen) == 3
    assert [r["ok"] for _, r in made] == [6, 6]
    assert [r["errors"] for _, r in made] == [4, 4]
    assert len(mock.state.requests) == 2 * 6

    def read(ref: str) -> list[dict[str, Any]]:
        version = platform.datasets.resolve(world.project, ref)
        out = [r for b in platform.datasets.iter_records(version) for r in b]
        for record in out:
            assert record["metadata"]["inference"].pop("trace_id") or record["metadata"]["inference"]["error"]
        return out

    local, remote = (read(result["output"]) for _, result in made)
    assert remote == local
    assert local[1]["messages"][-1] == {"role": "assistant", "content": "Hello from the mock upstream."}
    with platform.store.session() as session:  # the cluster's calls were traced, tagged with their job
        tagged = session.scalars(select(SpanTag.span_id).where(SpanTag.tag == f"job:{made[1][0]}")).all()
    assert len(tagged) == 6

    # A cancel stops the chunks running on the cluster: no call arrives after it, and nothing is made.
    world.add_model("slow", "slow-500")
    platform.datasets.create_version(
        project_id=world.project, name="many", kind="chat", batches=[[records[1]] * 32]
    )
    settings = on_ray(platform.settings, ray_address).model_copy(update={"job_heartbeat_seconds": 0.1})
    job = submit(settings, "many", model="slow", output="never", concurrency=1)
    mock.reset()
    service = JobService(platform.store)
    worker = Worker(service, settings, threading.Event())
    claimed = service.claim(worker.worker_id, [batch.KIND])
    assert claimed is not None
    running = threading.Thread(target=worker.execute, args=(claimed,))
    running.start()
    deadline = time.monotonic() + 60
    while not mock.state.requests:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    service.cancel(job.id, world.project)
    running.join(60)
    assert service.get(job.id, None).status == JobStatus.cancelled
    time.sleep(1.0)
    calls = len(mock.state.requests)
    time.sleep(1.5)
    assert len(mock.state.requests) == calls < 16  # 4 tasks x 4 calls of 0.5 s were under way
    assert "never" not in {d.name for d in platform.datasets.list_datasets(world.project)}


@POSTGRES
def test_an_eval_run_on_ray_scores_what_the_local_run_scores(
    platform: Platform, mock: MockUpstream, ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = eval_world(platform, mock)
    world.add_model("mock-b", "slow-20")
    suite = {
        "name": "greeting",
        "cases": [
            {"input": f"say hello {i}", "expected": "Goodbye." if i % 3 else "Hello"} for i in range(8)
        ],
        "targets": [{"model": "mock-a"}, {"model": "mock-b", "parameters": {"temperature": 0}}],
        "scorers": [{"name": "regex", "config": {"pattern": "^Hello"}}, {"name": "rouge_l", "config": {}}],
        "concurrency": 2,
    }
    store, evals = platform.store, world.evals
    summaries, rows = [], []
    pids = Pids(monkeypatch)
    for settings in (
        platform.settings,
        on_ray(platform.settings, ray_address).model_copy(update={"ray_tasks": 2}),
    ):
        with store.write() as session:
            session.execute(delete(EvalCache))  # both runs call the models; neither reads a cached answer
        run = evals.start(world.project, suite, created_by_key_id=world.principal.key_id)
        summaries.append(execute(store, settings, world.project, run.id))
        rows.append(evals.rows(run.id))
    assert pids.elsewhere()
    assert len(pids.seen) == 2
    assert len(mock.state.requests) == 2 * 16

    def same(row: dict[str, Any]) -> tuple[Any, ...]:
        return row["case_index"], row["target_index"], row["status"], row["output"], row["scores"]

    assert sorted(map(same, rows[1])) == sorted(map(same, rows[0]))
    assert len(rows[1]) == 16
    for local, remote in zip(summaries[0]["targets"], summaries[1]["targets"], strict=True):
        assert remote["score"] == local["score"]
        assert remote["ok"] == local["ok"] == 8

    # A cancel (raised by the job's progress) stops the tasks on the cluster: no more calls arrive.
    world.add_model("slow", "slow-300")
    slow = {**suite, "targets": [{"model": "slow"}], "cases": [{"input": f"q {i}"} for i in range(40)]}
    slow["concurrency"] = 1
    run = evals.start(world.project, slow, created_by_key_id=world.principal.key_id)
    mock.reset()

    def cancel_once_answering(finished: int, total: int) -> None:
        if finished:
            raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        execute(store, on_ray(platform.settings, ray_address), world.project, run.id, cancel_once_answering)
    assert evals.get_run(world.project, run.id).status == "cancelled"
    time.sleep(1.0)
    calls = len(mock.state.requests)
    time.sleep(2.0)
    assert len(mock.state.requests) == calls < 40  # 2 tasks x 20 cases x 0.3 s had ~6 s to go


@POSTGRES
def test_a_fine_tune_under_ray_train_makes_the_adapter_the_local_run_makes(
    store: Store, tmp_path: Path, ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    settings = load_settings(
        {"home": tmp_path / "home", "database_url": store.url, "job_heartbeat_seconds": 0.2}
    )
    base = make_tiny_model(settings.home / "models" / "base")
    project = AuthService(store).create_project("ft").id
    DatasetService(store, ArtifactStore.from_settings(settings)).create_version(
        project_id=project, name="tickets", kind="chat", batches=[chat_records(8, validation=2)]
    )
    config = {
        "max_steps": 2,
        "logging_steps": 1,
        "save_steps": 2,
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 2,
        "num_threads": 1,
    }
    params = {"base": str(base), "dataset": "tickets", "config": config}
    local = run_job(store, settings, "finetune", {**params, "name": "here"}, project)
    pids = Pids(monkeypatch)
    remote = run_job(store, on_ray(settings, ray_address), "finetune", {**params, "name": "there"}, project)

    assert pids.elsewhere()
    assert len(pids.seen) == 1
    assert local.result is not None
    assert remote.result is not None
    assert remote.result["model"] == "there"
    mine = load_file(Path(local.result["artifacts"]["adapter"]) / "adapter_model.safetensors")
    theirs = load_file(Path(remote.result["artifacts"]["adapter"]) / "adapter_model.safetensors")
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        assert (theirs[name] - tensor).abs().max().item() < 1e-6, name
    a, b = local.result["metrics"], remote.result["metrics"]
    assert b["steps"] == a["steps"] == 2
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6)
    logs = [log.line for log in JobService(store).logs(remote.id, None)]
    assert sum('"event": "train"' in line for line in logs) == 2  # rank 0's steps reached the job's log
    assert remote.state is not None
    assert Path(remote.state["checkpoint"]).name == "checkpoint-2"
    assert make_executor(settings).name == "local"
    with store.session() as session:
        assert {f.model_alias for f in session.query(Finetune)} == {"here", "there"}
