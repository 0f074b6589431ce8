"""`pii`: personal data in the text (e-mail addresses, phone numbers, payment cards, IBANs, IP
addresses, national IDs, street addresses), found by fmops.pii: the detector dataset curation uses, so
a guardrail and a curated dataset agree on what counts. Recommends `redact` with a span per finding."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, TextSpan
from fmops.guardrails.checks import counted
from fmops.pii import PiiType, detect, parse_types

# Secrets have a guardrail of their own (`secrets`): a policy on personal data should not also block
# every long random token unless asked to.
DEFAULT_TYPES = tuple(t.value for t in PiiType if t is not PiiType.secret)


class PiiConfig(GuardrailConfig):
    types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        min_length=1,
        max_length=20,
        description="PII types to find (default: every type but secret); see fmops.pii.PiiType",
    )

    @field_validator("types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        parse_types(value)  # ValueError names the unknown ones and the known ones
        return value


class Pii(Guardrail[PiiConfig]):
    name: ClassVar[str] = "pii"
    description: ClassVar[str] = (
        "Personal data: e-mail, phone, payment card (Luhn), IBAN (mod 97), IP address, national IDs"
        " (checksums), street address; recommends redacting each"
    )
    Config = PiiConfig
    spans: ClassVar[bool] = True

    def __init__(self, config: PiiConfig) -> None:
        super().__init__(config)
        self._types = parse_types(config.types)

    def check(self, text: str, context: Context) -> Decision:
        findings = detect(text, self._types)
        if not findings:
            return Decision.allow()
        spans = tuple(TextSpan(f.start, f.end, f.type.value) for f in findings)
        kinds = [f.type.value for f in findings]
        return Decision.redact(
            f"personal data found: {counted(kinds)}", spans, data={"types": sorted(set(kinds))}
        )
