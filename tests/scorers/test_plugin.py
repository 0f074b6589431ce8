"""A custom Python function as a scorer: the decorator, a real entry-point plugin, and where scorers
that need an expected output are refused (online evaluators score live traces, which have none)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from fmops import plugins
from fmops.errors import UserError
from fmops.evaluators import EvaluatorService, RuleCreate
from fmops.platform import Platform
from fmops.scorers import (
    Case,
    ScorerConfig,
    ScorerError,
    ScoreResult,
    build,
    get_scorer,
    scorer_function,
    scorers,
)

PLUGIN = '''
from fmops.scorers import Case, ScorerConfig, scorer_function


class Keyword(ScorerConfig):
    word: str


@scorer_function("has_keyword", "Passes when the answer mentions a word", config=Keyword)
def has_keyword(case: Case, config: Keyword) -> bool:
    """1.0 when the word is in the answer."""
    return config.word.casefold() in case.output_text.casefold()
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny distribution on sys.path whose entry point names a function scorer, as pip would lay it."""
    site = tmp_path / "site"
    (site / "fmops_keyword_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "fmops_keyword_plugin.py").write_text(PLUGIN)
    info = site / "fmops_keyword_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fmops-keyword-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [fmops.scorers]
        has_keyword = fmops_keyword_plugin:has_keyword
        """)
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_objects", {})  # entry points are read once per process: read again


@pytest.mark.usefixtures("installed_plugin")
def test_a_function_installed_as_an_entry_point_plugin_is_a_scorer() -> None:
    assert "has_keyword" in scorers()
    assert {"exact_match", "judge"} <= set(scorers())  # the built-ins are still there
    cls = get_scorer("has_keyword")
    assert (cls.description, cls.needs_model, cls.needs_expected) == (
        "Passes when the answer mentions a word",
        False,
        False,
    )
    assert cls.config_schema()["required"] == ["word"]
    scorer = build("has_keyword", {"word": "Refund"})
    assert scorer.score(Case.of(None, "You will get a refund.")) == ScoreResult(1.0, "pass")
    assert scorer.score(Case.of(None, "")).value == 0.0
    with pytest.raises(UserError) as caught:
        build("has_keyword", {})
    assert caught.value.param == "config.word"


def test_function_scorers_return_bools_numbers_or_results() -> None:
    @scorer_function("t.length_ratio", "Shorter is better")
    def ratio(case: Case) -> float:
        return 1 / (1 + len(case.output_text))

    @scorer_function("t.verdict", "Returns a full result", needs_expected=True)
    def full(case: Case) -> ScoreResult:
        return ScoreResult(0.25, "quarter", "a comment", {"k": 1})

    @scorer_function("t.broken", "Returns nonsense")
    def broken(case: Case) -> Any:
        return 2 if case.output_text else "yes"

    assert ratio(ratio.config_model()).score(Case.of(None, "abc")) == ScoreResult(0.25)
    assert full.needs_expected
    assert full.__doc__ == "Returns a full result"  # the function's docstring, else the description
    result = full(ScorerConfig()).score(Case.of(None, "x"))
    assert (result.label, result.data) == ("quarter", {"k": 1})
    with pytest.raises(ScorerError, match=r"within 0\.\.1"):
        broken(broken.config_model()).score(Case.of(None, "x"))
    too_big = scorer_function("t.big", "Out of range")(lambda case: ScoreResult(3.0))
    with pytest.raises(ScorerError, match=r"returned 3\.0"):
        too_big(too_big.config_model()).score(Case.of(None, "x"))
    with pytest.raises(ScorerError, match="returned a str"):
        broken(broken.config_model()).score(Case.of(None, ""))
    with pytest.raises(UserError, match=r"config\.anything"):
        ratio.parse_config({"anything": 1})


def test_online_evaluators_refuse_scorers_that_need_an_expected_output(platform: Platform) -> None:
    auth = platform.auth
    auth.bootstrap(platform.settings.home / "admin.key")
    with platform.store.session() as session:
        project = auth.project_by_name(session, "default").id
    service = EvaluatorService(platform.store, platform.catalog)
    body = RuleCreate.model_validate({"name": "exact", "scorer": "exact_match"})
    with pytest.raises(UserError, match="live traces do not have") as caught:
        service.create(project, body, created_by_key_id="k1")
    assert caught.value.param == "scorer"
    # The per-case scorers that judge the output alone are fine online.
    ok = RuleCreate.model_validate({"name": "fast", "scorer": "latency", "config": {"max_ms": 2000}})
    assert service.create(project, ok, created_by_key_id="k1").config == {"max_ms": 2000.0}
