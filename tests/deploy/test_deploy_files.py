"""deploy/: the Helm chart linted and rendered by Helm's own Go SDK (helm-python-sdk), its manifests
checked against Kubernetes' OpenAPI schemas (kubernetes-validate); the Compose file checked by
`docker-compose config` (Debian's docker-compose, installed by `make test`). No cluster and no Docker
engine run here: what is checked is that the files are well formed, render for the values people
set, and start the fmops commands that exist, with the options they pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from fmops.cli import app as cli_app
from fmops.settings import Settings
from support.services import require_module, unavailable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "fmops"
KUBERNETES = "1.30.0"  # the oldest Kubernetes the chart is checked against (autoscaling/v2, batch/v1)
VALUES: dict[str, Any] = {
    "secrets": {
        "databaseUrl": "postgresql+psycopg://fmops:pw@db:5432/fmops",
        "redisUrl": "redis://redis:6379/0",
        "secretKey": "a-fernet-key",
        "awsAccessKeyId": "AKIAEXAMPLE",
        "awsSecretAccessKey": "aws-secret-value",
    },
    "config": {
        "artifactUrl": "s3://team-bucket/fmops",
        "artifactOptions": {"endpoint_url": "http://minio:9000"},
        "otlpEndpoint": "http://otel-collector:4318/v1/traces",
        "extraEnv": {"FMOPS_TRACE_RETENTION_DAYS": 14},
    },
}


def helm() -> Any:
    return require_module("helm_python", "the chart is linted and rendered with Helm's Go SDK (make install)")


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm().Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="prod", namespace="fmops", is_install=True)
    return [
        doc
        for name, text in files.items()
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def check_fmops_command(argv: list[str]) -> None:
    """`argv` (fmops ...) names a real command with options it takes: parsed by the CLI itself."""
    assert argv[0] == "fmops", argv
    command: Any = typer.main.get_command(cli_app)  # typer's own click: duck-typed here
    name, args = "fmops", list(argv[1:])
    while hasattr(command, "resolve_command"):  # a group: load the subcommand as a run would
        name, sub, args = command.resolve_command(command.context_class(command), args)
        assert sub is not None, f"no command {name!r} in {argv}"
        command = sub
    command.make_context(name, args)  # raises on an option or argument the command does not take


def check_settings(names: Iterable[str]) -> None:
    """Every FMOPS_* variable the files set is a setting fmops reads (one name per setting)."""
    fmops = [n for n in names if n.startswith("FMOPS_")]
    assert fmops
    unknown = [n for n in fmops if n.removeprefix("FMOPS_").lower() not in Settings.model_fields]
    assert unknown == []


def test_the_chart_lints_clean() -> None:
    report = helm().lint(str(CHART), VALUES, strict=True, namespace="fmops", kube_version=KUBERNETES)
    assert report["errors"] == []
    # Severity 1 is helm's INFO ("icon is recommended"); warnings and errors would be 2 and up.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_rendered_manifests_are_valid_kubernetes() -> None:
    kv = require_module("kubernetes_validate", "the manifests are checked against Kubernetes' schemas")
    docs = render(VALUES)
    for doc in docs:
        kv.validate(doc, KUBERNETES, strict=True)  # raises on an unknown field or a wrong type
    kinds = by_kind(docs)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "Secret", "Service"]
    deployments = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    assert sorted(deployments) == ["prod-fmops-gateway", "prod-fmops-worker"]
    [hpa] = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "prod-fmops-gateway"
    assert "replicas" not in deployments["prod-fmops-gateway"]["spec"]  # the autoscaler owns it
    [service] = kinds["Service"]
    assert service["spec"]["selector"] == deployments["prod-fmops-gateway"]["spec"]["selector"]["matchLabels"]

    # Migrations run before each install and upgrade, after the Secret and ConfigMap they read exist.
    [job] = kinds["Job"]
    [secret], [config] = kinds["Secret"], kinds["ConfigMap"]
    for hook in (job, secret, config):
        assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < weight
    assert int(config["metadata"]["annotations"]["helm.sh/hook-weight"]) < weight

    # Secrets only in the Secret; settings in the ConfigMap, as fmops reads them.
    assert "aws-secret-value" in str(secret["stringData"])
    assert all("aws-secret-value" not in str(d) for d in docs if d is not secret)
    assert config["data"]["FMOPS_ARTIFACT_URL"] == "s3://team-bucket/fmops"
    assert config["data"]["FMOPS_ARTIFACT_OPTIONS"] == '{"endpoint_url":"http://minio:9000"}'
    assert config["data"]["FMOPS_TRACE_RETENTION_DAYS"] == "14"
    containers = [d["spec"]["template"]["spec"]["containers"][0] for d in [job, *deployments.values()]]
    for container in containers:
        check_fmops_command(container["command"])
        env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
        assert env["FMOPS_DATABASE_URL"] == "database-url"
        assert env["AWS_SECRET_ACCESS_KEY"] == "aws-secret-access-key"
    gateway_env = deployments["prod-fmops-gateway"]["spec"]["template"]["spec"]["containers"][0]["env"]
    check_settings([*config["data"], *(e["name"] for c in containers for e in c["env"])])
    assert {"name": "FMOPS_GATEWAY_WORKERS", "value": "1"} in gateway_env
    assert [c["command"][:2] for c in containers] == [["fmops", "db"], ["fmops", "up"], ["fmops", "worker"]]


def test_the_chart_takes_an_existing_secret_fixed_replicas_and_a_shared_claim() -> None:
    kv = require_module("kubernetes_validate", "the manifests are checked against Kubernetes' schemas")
    values = {
        "existingSecret": "fmops-prod",
        "gateway": {"autoscaling": {"enabled": False}, "replicas": 3},
        "data": {"existingClaim": "fmops-data"},
    }
    docs = render(values)
    for doc in docs:
        kv.validate(doc, KUBERNETES, strict=True)
    kinds = by_kind(docs)
    assert "Secret" not in kinds
    assert "HorizontalPodAutoscaler" not in kinds
    gateway = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-gateway"))
    assert gateway["spec"]["replicas"] == 3
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert refs == {"fmops-prod"}
    # Gateways serve the fine-tunes workers wrote: both mount the one claim at /data.
    for deployment in kinds["Deployment"]:
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert volumes == [{"name": "data", "persistentVolumeClaim": {"claimName": "fmops-data"}}]


def test_the_chart_says_what_to_fix() -> None:
    with pytest.raises(Exception, match=r"secrets\.databaseUrl is required"):
        render({})
    # values.schema.json: a wrong type or a misspelt key is refused with where it is.
    with pytest.raises(Exception, match=r"/gateway/replicas': got string, want integer"):
        render({"existingSecret": "s", "gateway": {"replicas": "three"}})
    with pytest.raises(Exception, match=r"additional properties 'gatway' not allowed"):
        render({"existingSecret": "s", "gatway": {"replicas": 3}})


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        unavailable("docker-compose is not installed (make test installs Debian's docker-compose)")
    base = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "FMOPS_SECRET_KEY")}
    return subprocess.run(
        [tool, "--project-directory", str(DEPLOY), "-f", str(DEPLOY / "compose.yaml"), *args],
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_compose_file_is_valid_and_starts_real_commands() -> None:
    secrets = {"POSTGRES_PASSWORD": "pw", "FMOPS_SECRET_KEY": "key"}
    checked = compose("config", env=secrets)
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert sorted(services) == ["gateway", "migrate", "otel-collector", "postgres", "redis", "vllm", "worker"]
    assert services["vllm"]["profiles"] == ["gpu"]  # started only with --profile gpu
    for name in ("migrate", "gateway", "worker"):
        check_fmops_command(services[name]["command"])
        check_settings(services[name]["environment"])
        assert services[name]["environment"]["FMOPS_DATABASE_URL"].startswith(
            "postgresql+psycopg://fmops:pw@"
        )
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["gateway"]["environment"]["FMOPS_GATEWAY_WORKERS"] == "2"
    missing = compose("config", "-q")
    assert missing.returncode != 0
    assert "POSTGRES_PASSWORD" in missing.stderr
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    assert collector["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
