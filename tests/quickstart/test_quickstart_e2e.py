"""`fmops quickstart --fast` end to end against a real server, with the real SmolLM2 and a real (short)
fine-tune: every stage's object exists with its lineage, the fine-tuned model answers through the
gateway, the eval run holds both targets, the experiment and its outcome are recorded. A second run
works too (new versions, no errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.server import RunningServer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
FMOPS = Path(sys.executable).with_name("fmops")


def quickstart(server: RunningServer, tmp_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env["FMOPS_HOME"] = str(tmp_path / "client-home")  # the command needs no home of its own
    args = [str(FMOPS), "quickstart", "--fast", "--json", "--url", server.url, "--api-key", server.admin_key]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:] + server.log_text()[-4000:]
    assert "✓ finetune" in done.stderr
    assert "✓ ab" in done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_quickstart_closes_the_loop_and_runs_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with start_server(home) as server, server.client() as api:
        first = quickstart(server, tmp_path)
        assert first["base_model"] == "smollm2-135m-instruct"
        alias = first["finetuned_model"]

        # traffic and feedback: every call traced, every item of the queue decided
        traffic = first["traffic"]
        assert traffic["calls"] == 16
        queue = api.get(f"/api/annotation-queues/{first['annotation_queue']}").json()
        assert traffic["accepted"] + traffic["corrected"] == 16
        assert queue["progress"]["done"] == 16

        # the dataset: the queue's export, then one version per curation step, each the parent of the next
        steps = [s["step"] for s in first["curation"]]
        assert steps == ["system", "dedup", "dedup", "pii", "decontaminate", "split"]
        name, _, version = first["dataset"].partition("@")
        lineage = api.get(f"/api/datasets/{name}/versions/{version}/lineage").json()
        assert lineage[-1]["source"]["type"] == "annotation"
        assert lineage[-1]["source"]["queue"] == first["annotation_queue"]
        assert first["curation"][-1]["out"] > 0

        # the fine-tune trained on that version and its model answers through the gateway
        job = api.get(f"/api/finetunes/{first['finetune_job']}").json()
        assert job["status"] == "succeeded"
        assert job["model"] == alias
        assert job["lineage"]["dataset"] == first["dataset"]
        assert job["lineage"]["dataset_version_id"] == lineage[0]["id"]
        assert any(e.get("event") == "train" for e in job["curve"])
        answer = api.post(
            "/v1/chat/completions",
            json={"model": alias, "messages": [{"role": "user", "content": "My parcel never came."}]},
            timeout=120,
        )
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"]

        # the eval run: both targets over the held-out set, with the paired test
        run = api.get(f"/api/evals/runs/{first['eval_run']}").json()
        assert run["status"] == "succeeded"
        assert [t["name"] for t in run["definition"]["targets"]] == ["base", "finetuned"]
        assert run["definition"]["targets"][1]["model"] == alias
        assert set(first["targets"]) == {"base", "finetuned"}
        for row in first["targets"].values():
            assert row["cases"] == 10
            assert 0 <= row["exact_match"] <= 1
            assert 0 <= row["valid_json"] <= 1
        assert first["comparison"]["a"] == "base"
        assert first["comparison"]["b"] == "finetuned"

        # the experiment, and its outcome recorded on the endpoint
        experiment = first["experiment"]
        assert sum(v["calls"] for v in experiment["variants"].values()) == 12
        events = api.get("/api/endpoints/triage/events").json()
        endpoint = api.get("/api/endpoints/triage").json()
        assert any(e["kind"] == "experiment_started" for e in events)
        if first["promoted"]:
            assert any(e["kind"] == "promoted" for e in events)
            assert endpoint["model"] == alias
            assert not endpoint["variants"]
        else:
            assert [v["name"] for v in endpoint["variants"]] == ["base", "finetuned"]
            assert not any(e["kind"] == "promoted" for e in events)
        loop = api.get(f"/api/models/{alias}/loop").json()
        assert loop["finetune"]["job_id"] == first["finetune_job"]
        assert [d["ref"] for d in loop["datasets"]][-1] == first["dataset"]
        assert loop["traces"][0]["queue"] == first["annotation_queue"]
        assert loop["evals"][0]["run_id"] == first["eval_run"]
        assert first["console_url"] == f"{server.url}/console/models/{alias}/loop"
        assert api.get(f"/console/models/{alias}/loop").status_code in (200, 303)

        # idempotent: a second run makes new versions and a new fine-tune
        second = quickstart(server, tmp_path)
        assert second["finetuned_model"] != alias
        assert second["dataset"] != first["dataset"]
        assert second["eval_run"] != first["eval_run"]
        assert httpx.get(f"{server.url}/readyz").status_code == 200
