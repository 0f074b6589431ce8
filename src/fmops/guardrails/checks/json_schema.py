"""`json_schema`: the answer must be JSON satisfying a JSON Schema (users' `pattern`s run under a
time limit, see fmops.scorers.json_schema). While a stream is still arriving (`context.final` False)
a partial answer is not yet JSON, so it is allowed until the last chunk (`whole`); a stream under a
policy that blocks on it is run whole, so nothing is sent before the answer is judged."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, GuardrailError, Stage
from fmops.scorers import json_schema
from fmops.scorers.builtin import parse_json
from fmops.scorers.safe_regex import PatternTimeout

MAX_PROBLEMS = 3


class JsonSchemaConfig(GuardrailConfig):
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON Schema the answer must satisfy")
    allow_code_fence: bool = Field(True, description="Accept JSON wrapped in a Markdown code fence")
    check_formats: bool = Field(False, description="Also check `format` (email, date-time, uri, ...)")

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        json_schema.check(value)
        return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class JsonSchema(Guardrail[JsonSchemaConfig]):
    name: ClassVar[str] = "json_schema"
    description: ClassVar[str] = (
        "The answer must be JSON that satisfies a JSON Schema (checked once it is whole)"
    )
    Config = JsonSchemaConfig
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.output})

    def __init__(self, config: JsonSchemaConfig) -> None:
        super().__init__(config)
        self._validator = json_schema.validator(config.schema_, check_formats=config.check_formats)

    @property
    def whole(self) -> bool:
        return True

    def check(self, text: str, context: Context) -> Decision:
        if not context.final:
            return Decision.allow()
        value, problem = parse_json(text, self.config.allow_code_fence)
        if problem is not None:
            # The parse error quotes no text, only where it failed.
            return Decision.block(f"the answer is not JSON ({problem})")
        problems: list[str] = []
        try:
            for error in self._validator.iter_errors(value):
                # Where, and which rule of the schema: the schema's own values, never the answer's.
                where = "/".join(str(p) for p in error.absolute_path) or "the top level"
                problems.append(f"at {where}: breaks {error.validator}={_short(error.validator_value)}")
                if len(problems) >= MAX_PROBLEMS:
                    break
        except PatternTimeout as exc:
            raise GuardrailError(f"a pattern in the schema is too slow: {exc}") from None
        except Exception as exc:  # an unresolvable $ref: the schema, not the answer, is at fault
            raise GuardrailError(f"the schema cannot be applied ({type(exc).__name__})") from None
        if not problems:
            return Decision.allow()
        return Decision.block("the answer does not match the JSON Schema: " + "; ".join(problems))
