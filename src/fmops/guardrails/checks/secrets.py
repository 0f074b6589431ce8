"""`secrets`: credentials in the text: vendor API keys and tokens by their documented prefixes,
`password = ...`-style assignments, private-key blocks and (unless turned off) long random-looking
tokens. The `secret` type of fmops.pii, the detector dataset curation uses."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, TextSpan
from fmops.guardrails.checks import counted
from fmops.pii import PiiType, detect

HIGH_ENTROPY = "high_entropy"


class SecretsConfig(GuardrailConfig):
    high_entropy: bool = Field(
        True,
        description="Also count long random-looking tokens with no known prefix (hashes in logs may hit)",
    )


class Secrets(Guardrail[SecretsConfig]):
    name: ClassVar[str] = "secrets"
    description: ClassVar[str] = (
        "Credentials: API keys and tokens (known prefixes), assigned passwords, private-key blocks,"
        " high-entropy tokens; recommends redacting each"
    )
    Config = SecretsConfig
    spans: ClassVar[bool] = True

    def check(self, text: str, context: Context) -> Decision:
        findings = [
            f for f in detect(text, (PiiType.secret,)) if self.config.high_entropy or f.detail != HIGH_ENTROPY
        ]
        if not findings:
            return Decision.allow()
        spans = tuple(TextSpan(f.start, f.end, PiiType.secret.value) for f in findings)
        # The detail ("aws_access_key", "private_key") says which rule matched, never the value.
        kinds = [f.detail or PiiType.secret.value for f in findings]
        return Decision.redact(f"secret found: {counted(kinds)}", spans, data={"kinds": sorted(set(kinds))})
