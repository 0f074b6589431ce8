"""The artifact store on S3: moto's S3 server on loopback, reached through s3fs as a real deployment
would (endpoint in FMOPS_ARTIFACT_OPTIONS, credentials in AWS_*). Atomic writes and key checks on
the object store; a dataset imported, versioned, read and exported by the real CLI; a tiny fine-tune
whose adapter goes up to the bucket and comes back on a machine that no longer has the run's folder.
The AWS secret appears in no log line, job log or stored lineage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from finetune.tiny import chat_records, make_tiny_model
from fmops.artifacts import ArtifactStore, upload_folder
from fmops.auth import AuthService, Principal
from fmops.catalog import Catalog, ModelSpec
from fmops.counters import make_counters
from fmops.datasets import DatasetService
from fmops.errors import ConfigError, UserError
from fmops.finetune.service import FinetuneService
from fmops.finetune.stored import adapter_files
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.stack import build_gateway, build_tracer
from fmops.jobs import JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.providers.llamacpp import default_chat_model_path
from fmops.secrets import SecretBox
from fmops.settings import Settings, load_settings
from fmops.store import Store
from support.cli_runs import run_session, session_env
from support.databases import migrated_sqlite_url

SECRET = "s3cr3t-" + uuid.uuid4().hex  # moto accepts any credentials; this one must never be seen


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket; the process's AWS variables point at it, as a deployment's would."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fmops-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"fmops-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, read with boto3 (not through the store under test)."""
    client = boto3.client("s3", endpoint_url=endpoint)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_writes_are_atomic_and_keys_stay_inside_the_prefix(endpoint: str, bucket: str) -> None:
    store = ArtifactStore(f"s3://{bucket}/fmops", {"endpoint_url": endpoint})
    assert not store.is_local
    with store.open_write("datasets/p/v.parquet") as f:
        f.write(b"version one")

    def crash() -> None:
        with store.open_write("datasets/p/v.parquet") as f:
            f.write(b"half of version two")
            raise RuntimeError("the writer died")

    with pytest.raises(RuntimeError):
        crash()
    # Neither the half-written object nor its .partial is left; the old object is whole.
    assert objects(endpoint, bucket) == {"fmops/datasets/p/v.parquet": b"version one"}
    with store.open_read("datasets/p/v.parquet") as f:
        assert f.read() == b"version one"
    assert store.size("datasets/p/v.parquet") == 11
    assert store.keys("datasets") == ["datasets/p/v.parquet"]
    for bad in ("../escape", "/etc/passwd", "a//b"):
        with pytest.raises(ValueError, match="invalid artifact key"):
            store.exists(bad)
    # A crashed writer's leftover (written by another process: the listing is not cached) is swept.
    client = boto3.client("s3", endpoint_url=endpoint)
    client.put_object(Bucket=bucket, Key="fmops/datasets/p/w.parquet.0badf00d.partial", Body=b"x")
    assert store.sweep_partials("datasets", older_than_seconds=-1) == [
        "datasets/p/w.parquet.0badf00d.partial"
    ]
    assert list(objects(endpoint, bucket)) == ["fmops/datasets/p/v.parquet"]


def test_credentials_are_refused_in_artifact_options() -> None:
    for options in ({"client_kwargs": {"aws_secret_access_key": "x"}}, {"key": "x"}, {"token": "x"}):
        with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
            load_settings({"artifact_options": options})
    # A KMS key id names a key but is no credential.
    kms = {"s3_additional_kwargs": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/fmops"}}
    assert load_settings({"artifact_options": kms}).artifact_options == kms


def test_a_dataset_round_trips_through_the_cli(endpoint: str, bucket: str, tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(5)
    ]
    (tmp_path / "v1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "v2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    env = session_env(tmp_path / "home") | {
        "FMOPS_ARTIFACT_URL": f"s3://{bucket}/team-a",
        "FMOPS_ARTIFACT_OPTIONS": json.dumps({"endpoint_url": endpoint}),
        "FMOPS_LOG_LEVEL": "debug",
    }
    out = tmp_path / "out.jsonl"
    imported, again, shown, exported = run_session(
        env,
        [
            ["data", "import", "v1.jsonl", "--name", "support"],
            ["data", "import", "v2.jsonl", "--name", "support"],
            ["data", "show", "support@1", "--json"],
            ["data", "export", "support@2", "--out", str(out)],
        ],
        cwd=tmp_path,
    )
    for outcome in (imported, again, shown, exported):
        outcome.ok()
        assert SECRET not in outcome.stdout + outcome.stderr
    version = json.loads(shown.stdout)
    assert version["rows"] == 5
    stored = objects(endpoint, bucket)
    assert len(stored) == 2
    assert all(k.startswith("team-a/datasets/") and k.endswith(".parquet") for k in stored)
    assert f"team-a/{version['path']}" in stored
    assert [json.loads(line)["messages"] for line in out.read_text().splitlines()] == [
        r["messages"] for r in rows[1:]
    ]
    assert not (tmp_path / "home" / "artifacts").exists()  # nothing went to the local disk


CONFIG = {
    "max_steps": 2,
    "logging_steps": 1,
    "save_steps": 2,
    "per_device_train_batch_size": 4,
    "num_threads": 1,
}


def on_s3(tmp_path: Path, endpoint: str, bucket: str) -> Settings:
    """Settings of a machine whose artifact store is the bucket (SQLite database, migrated)."""
    return load_settings(
        {
            "home": tmp_path / "home",
            "database_url": migrated_sqlite_url(tmp_path),
            "artifact_url": f"s3://{bucket}/fmops",
            "artifact_options": {"endpoint_url": endpoint},
            "job_heartbeat_seconds": 0.1,
        }
    )


def admin(store: Store, settings: Settings) -> Principal:
    """The default project's admin key, as the first `fmops up` makes it."""
    auth = AuthService(store)
    key = auth.bootstrap(settings.home / "admin.key")
    assert key is not None
    return auth.authenticate(key)


async def serve_once(
    settings: Settings, store: Store, catalog: Catalog, principal: Principal, model: str
) -> dict[str, Any]:
    """One chat call through a gateway built as a server builds its own (this process's engines)."""
    tracer = build_tracer(settings, store)
    gateway = build_gateway(settings, store, catalog, tracer, make_counters(settings))
    tracer.start()
    try:
        request = ChatCompletionRequest.model_validate(
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        )
        return dict((await gateway.chat(principal, request)).body)
    finally:
        await gateway.close()
        await tracer.close()


def test_a_finetuned_adapter_goes_up_and_comes_back(
    endpoint: str, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = on_s3(tmp_path, endpoint, bucket)
    store = Store(settings.database_url)
    try:
        principal = admin(store, settings)
        project = principal.project_id
        artifacts = ArtifactStore.from_settings(settings)
        datasets = DatasetService(store, artifacts)
        datasets.create_version(project_id=project, name="tickets", kind="chat", batches=[chat_records(8)])
        base = make_tiny_model(settings.home / "models" / "base")
        jobs = JobService(store)
        job_id = jobs.submit(
            "finetune", {"base": str(base), "dataset": "tickets", "config": CONFIG}, project_id=project
        ).id
        worker = Worker(jobs, settings, threading.Event())
        claimed = jobs.claim(worker.worker_id, ["finetune"])
        assert claimed is not None
        worker.execute(claimed)
        job = jobs.get(job_id, None)
        assert job.status == JobStatus.succeeded, job.error
        assert job.result is not None
        result: dict[str, Any] = job.result
        stored = result["artifacts"]["stored"]["adapter"]
        assert stored["prefix"] == f"finetunes/{project}/{job_id}/adapter"
        local = Path(result["artifacts"]["adapter"])
        assert sorted(stored["files"]) == sorted(p.name for p in adapter_files(local))
        assert "adapter_model.safetensors" in stored["files"]
        in_bucket = objects(endpoint, bucket)
        for name, digest in stored["files"].items():
            assert hashlib.sha256(in_bucket[f"fmops/{stored['prefix']}/{name}"]).hexdigest() == digest
        assert not any(k.endswith(".partial") or k.endswith(".bin") for k in in_bucket)

        # Another machine: the run's folder is gone, and its artifact cache is empty. A gateway serves
        # the fine-tuned model with the adapter fetched from the bucket, verified, into the cache.
        shutil.rmtree(settings.home / "finetunes")
        cache = settings.home / "cache" / "artifacts"
        assert not cache.exists()
        catalog = Catalog(store, settings, SecretBox.from_settings(settings))
        entry = catalog.get(project, result["model"])
        assert entry.provider == "transformers"
        assert not Path(entry.options["adapter"]).exists()
        answer = asyncio.run(serve_once(settings, store, catalog, principal, result["model"]))
        assert answer["choices"][0]["message"]["role"] == "assistant"
        [fetched] = list(cache.iterdir())
        for name, digest in stored["files"].items():
            assert hashlib.sha256((fetched / name).read_bytes()).hexdigest() == digest

        # The export comes from the bucket too, verified (the same cached copy).
        service = FinetuneService(store, settings, jobs, catalog, datasets)
        out = service.export(project, job_id, "adapter", tmp_path / "exported")
        for name, digest in stored["files"].items():
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
        cached = list((settings.home / "cache" / "artifacts").iterdir())
        assert len(cached) == 1  # one folder, named by the content's digest
        again = service.export(project, job_id, "adapter", tmp_path / "again")
        assert sorted(p.name for p in again.iterdir()) == sorted(stored["files"])
        assert list((settings.home / "cache" / "artifacts").iterdir()) == cached

        seen = [log.line for log in jobs.logs(job_id, None)] + [json.dumps(result)]
        seen += [r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records]
        assert not [line for line in seen if SECRET in line]
    finally:
        store.dispose()


def test_a_gguf_in_the_store_is_served_by_llama_cpp_on_a_machine_without_it(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """A merged fine-tune's GGUF (here the packaged SmolLM2 file) named by `options.stored`: the
    gateway's llama.cpp engine fetches it into an empty cache when it loads. Over the API, `stored`
    is refused: only the operator's CLI and fine-tune jobs name files in the store."""
    gguf = default_chat_model_path()
    assert gguf is not None
    settings = on_s3(tmp_path, endpoint, bucket)
    store = Store(settings.database_url)
    try:
        principal = admin(store, settings)
        prefix = f"finetunes/{principal.project_id}/job/gguf"
        files = upload_folder(ArtifactStore.from_settings(settings), prefix, [gguf])
        stored = json.dumps({"model": {"prefix": prefix, "files": files, "file": True}})
        catalog = Catalog(store, settings, SecretBox.from_settings(settings))
        spec = ModelSpec(
            alias="merged",
            provider="llamacpp",
            model=str(tmp_path / "trained-elsewhere" / gguf.name),  # not on this machine
            options={"n_ctx": 512, "stored": stored},
        )
        with pytest.raises(UserError, match="options stored of the llamacpp provider may be set only"):
            catalog.add(principal.project_id, spec, trusted=False)
        catalog.add(principal.project_id, spec, trusted=True)
        cache = settings.home / "cache" / "artifacts"
        assert not cache.exists()
        answer = asyncio.run(serve_once(settings, store, catalog, principal, "merged"))
        assert answer["choices"][0]["message"]["content"]
        [fetched] = list(cache.iterdir())
        assert hashlib.sha256((fetched / gguf.name).read_bytes()).hexdigest() == files[gguf.name]
    finally:
        store.dispose()
