"""`fmops eval` as a CI gate, through the real console script: exit 0 pass, 1 gate failed, 2 cannot run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.gateway import add_models, cli_env, fmops, openai_model
from support.mock_upstream import MockUpstream

REPLY = "Hello from the mock upstream."


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream) -> Path:
    home = tmp_path_factory.mktemp("eval-cli")
    add_models(home, {"mock-a": openai_model("m1", mock.url), "mock-b": openai_model("slow-10", mock.url)})
    return home


def write_suite(home: Path, name: str, body: str) -> Path:
    path = home / f"{name}.yaml"
    path.write_text(body)
    return path


SUITE = """
name: {name}
seed: {seed}
cases:
{cases}
targets:
  - {{model: mock-a}}
  - {{model: mock-b, parameters: {{temperature: 0}}}}
scorers:
  - {{name: regex, config: {{pattern: "{pattern}"}}, threshold: {threshold}}}
concurrency: 4
"""


def suite(home: Path, name: str, pattern: str = "^Hello", threshold: float = 0.9, seed: int = 0) -> Path:
    cases = "\n".join(f"  - {{input: 'case {i}', expected: '{REPLY}'}}" for i in range(10))
    text = SUITE.format(name=name, seed=seed, cases=cases, pattern=pattern, threshold=threshold)
    return write_suite(home, name, text)


# `show`, `export`, `compare` and a missing file in one process: starting the CLI takes seconds.
_READS = """
import contextlib, io, sys
from fmops.cli import app
for args in sys.argv[1:]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = app(args.split(), standalone_mode=False)
    print(f"=== {args} -> {code or 0}")
    print(out.getvalue())
"""


def reads(home: Path, *commands: str) -> dict[str, tuple[int, str]]:
    done = subprocess.run(
        [sys.executable, "-c", _READS, *commands],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = {}
    for part in done.stdout.split("=== ")[1:]:
        head, _, body = part.partition("\n")
        command, _, code = head.rpartition(" -> ")
        found[command] = (int(code), body)
    return found


def test_exit_codes_0_pass_1_gate_failed_2_cannot_run(home: Path, mock: MockUpstream) -> None:
    done = fmops(home, "eval", "run", str(suite(home, "pass")), "--json", "--fail-under", "0.5")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["gate"] == {"passed": True, "failures": []}
    assert [t["score"]["mean"] for t in out["summary"]["targets"]] == [1.0, 1.0]
    assert len(out["results"]) == 20
    assert out["results"][0]["scores"]["regex"]["value"] == 1.0
    run_id = out["run"]["id"]

    bad = write_suite(
        home,
        "bad",
        "name: bad\ncases: {dataset: nowhere}\ntargets: [{model: mock-c}]\nscorers: [{name: regexx}]\n",
    )
    found = reads(
        home,
        f"eval run {bad}",
        f"eval show {run_id} --cases 3",
        f"eval export {run_id} --format csv",
        f"eval compare {run_id} --json",
        f"eval run {home / 'missing.yaml'}",
        f"select --suite {home / 'pass.yaml'} --candidates mock-a,mock-b",
    )
    code, shown = found[f"eval show {run_id} --cases 3"]
    assert code == 0
    assert "mock-a" in shown
    assert "score [95% CI]" in shown
    code, exported = found[f"eval export {run_id} --format csv"]
    lines = exported.strip().splitlines()
    assert lines[0].startswith("case_index,target,status,score")
    assert len(lines) == 21
    code, compared = found[f"eval compare {run_id} --json"]
    assert json.loads(compared)[0]["test"] == "none"  # both targets answered every case alike
    assert found[f"eval run {home / 'missing.yaml'}"][0] == 2
    code, problems = found[f"eval run {bad}"]  # a suite that cannot run: exit 2, every problem named
    assert code == 2
    assert "cases.dataset" in problems
    assert "no model 'mock-c'" in problems
    assert "did you mean 'regex'" in problems
    code, selected = found[f"select --suite {home / 'pass.yaml'} --candidates mock-a,mock-b"]
    assert code == 0
    assert "recommended: mock-" in selected

    # The same cases answered worse by a second run: its threshold and the regression fail the gate.
    mock.script(*[{"reply": "Bye."}] * 20)
    worse = fmops(home, "eval", "run", str(suite(home, "pass", seed=1)), "--compare", run_id)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "significant regression" in worse.stderr
    assert "regex mean 0.000 is under its threshold 0.9" in worse.stderr
