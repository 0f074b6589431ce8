"""`pii: {action: redact|mask|drop, types: [...]}`: personal data and secrets out of every text of a
record, with the detector the guardrails use (fmops.pii). Reports count records by type found and
show the records after redaction (never the original values)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from fmops.curation.base import Batch, Source, Step, StepContext, StepOptions, StepReport, clip, counted
from fmops.curation.fields import rewrite
from fmops.pii import PiiType, apply, detect, parse_types, redact


class PiiOptions(StepOptions):
    action: Literal["redact", "mask", "drop"] = "redact"
    types: list[str] | None = Field(None, min_length=1, max_length=20, description="PII types (default: all)")

    @field_validator("types")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            parse_types(value)  # ValueError names the unknown ones
        return value


class Pii(Step[PiiOptions]):
    name = "pii"
    Options = PiiOptions
    description: ClassVar[str] = "Redact, mask or drop personal data and secrets (emails, phones, cards, ...)"
    per_batch = True

    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        types = parse_types(self.options.types)
        action = self.options.action
        found_types: dict[str, int] = {}
        for batch in counted(source, ctx, report):
            kept: Batch = []
            for record in batch:
                text = ctx.text(record)
                findings = detect(text, types)
                if not findings:
                    kept.append(record)
                    continue
                kinds = sorted({f.type.value for f in findings})
                for kind in kinds:
                    found_types[kind] = found_types.get(kind, 0) + 1
                if action == "drop":
                    report.removed["pii"] += 1
                    report.example("pii", {"text": clip(apply(text, findings)), "types": kinds})
                    continue
                changed = rewrite(ctx.kind, record, _rewriter(types, action))
                report.modified[action] += 1
                report.example(action, {"text": clip(ctx.text(changed)), "types": kinds})
                kept.append(changed)
            report.records_out += len(kept)
            yield kept
        report.details["records_with"] = found_types


def _rewriter(types: frozenset[PiiType], action: str) -> Any:
    def fn(text: str) -> str:
        return redact(text, action, types)

    return fn
