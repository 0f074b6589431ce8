"""`scorer`: any `fmops.scorers` plugin as a guardrail, so the checks endpoints already block with
(a regex, contains, length, json_schema scorer) keep working as policies.

    guardrail: scorer
    config: {scorer: regex, config: {pattern: "(?i)ignore previous"}, expect: fail}

`expect: pass` (the default) hits when the scorer fails; `expect: fail` hits when it passes (a regex
that finds what is forbidden). Only scorers that decide on the text alone qualify: no model call, no
expected answer, no finished call's latency or cost, no local encoder on the request path.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from fmops.errors import UserError
from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, GuardrailError
from fmops.scorers.base import Case, Scorer
from fmops.scorers.registry import get_scorer


def _unusable(cls: type[Scorer[Any]]) -> str | None:
    if cls.needs_model:
        return "calls a model (use the judge guardrail)"
    if cls.needs_expected:
        return "compares with an expected answer, which a live call has none of"
    if cls.needs_record:
        return "reads the finished call's latency or cost, unknown while it runs"
    if cls.slow:
        return "is too slow for the request path"
    return None


class ScorerCheckConfig(GuardrailConfig):
    scorer: str = Field(min_length=1, max_length=100, description="A scorer (GET /api/scorers)")
    config: dict[str, Any] = Field(default_factory=dict, description="The scorer's config")
    expect: Literal["pass", "fail"] = Field(
        "pass", description="pass: a failing scorer is a hit; fail: a passing scorer is a hit"
    )

    @model_validator(mode="after")
    def _usable(self) -> ScorerCheckConfig:
        try:
            cls = get_scorer(self.scorer)
            why = _unusable(cls)
            if why is not None:
                raise ValueError(f"scorer {self.scorer!r} {why}")
            parsed = cls.parse_config(self.config)
        except UserError as exc:
            raise ValueError(exc.message) from None
        # The normalised config (defaults filled in), as the store keeps it.
        object.__setattr__(self, "config", parsed.model_dump(mode="json", by_alias=True))
        return self


class ScorerCheck(Guardrail[ScorerCheckConfig]):
    name: ClassVar[str] = "scorer"
    description: ClassVar[str] = (
        "Any cheap fmops.scorers plugin as a check (regex, contains, length, json, json_schema...)"
    )
    Config = ScorerCheckConfig

    def __init__(self, config: ScorerCheckConfig) -> None:
        super().__init__(config)
        cls = get_scorer(config.scorer)
        self._scorer = cls(cls.parse_config(config.config))

    @property
    def whole(self) -> bool:
        # What the text must pass (contains, json, a minimum length) is judged on the whole answer:
        # a stream's beginning would fail it. What must not appear (`expect: fail`) is found at once.
        return self.config.expect == "pass"

    def check(self, text: str, context: Context) -> Decision:
        if not context.final and self.whole:
            return Decision.allow()
        # Scorers judge `output_text`; on the input stage that is the caller's text.
        case = Case(input=text, output=text, input_text=text, output_text=text)
        result = self._scorer.score(case)
        if result.value is None and result.label == "timeout":
            # A pattern's limit is wall-clock: a busy process can trip it on a short text once.
            result = self._scorer.score(case)
        if result.value is None:
            raise GuardrailError(f"scorer {self.config.scorer!r} could not decide ({result.label})")
        passed = result.value >= 0.5
        if passed == (self.config.expect == "pass"):
            return Decision.allow()
        # The scorer's comment may quote the text (a regex's match, a schema error): leave it out.
        how = "passed" if passed else "failed"
        return Decision.block(
            f"scorer {self.config.scorer!r} {how}", score=result.value, data={"label": result.label}
        )
