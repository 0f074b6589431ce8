"""`system: {content: TEXT}`: set the system message of every chat (or preference prompt) to TEXT, or
drop it with `content: null`. The use: distilling a long prompt into a fine-tune. Traffic recorded
under a prompt of many rules trains a model that needs only a short instruction, so it is served
with fewer prompt tokens per call, and the rules are not retrained on every example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field

from fmops.curation.base import Batch, Source, Step, StepContext, StepOptions, StepReport, clip, counted
from fmops.datasets.records import RecordKind
from fmops.errors import UserError

Messages = list[dict[str, Any]]


class SystemOptions(StepOptions):
    content: str | None = Field(
        min_length=1, max_length=100_000, description="The new system message; null drops it"
    )


def _replaced(messages: Messages, content: str | None) -> Messages:
    rest = [m for m in messages if m.get("role") != "system"]
    return rest if content is None else [{"role": "system", "content": content}, *rest]


class System(Step[SystemOptions]):
    name = "system"
    Options = SystemOptions
    description: ClassVar[str] = "Set (or drop) the system message of chat and preference records"
    per_batch = True

    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        field = {RecordKind.chat: "messages", RecordKind.preference: "prompt"}.get(ctx.kind)
        if field is None:
            raise UserError(
                f"system: {ctx.kind} records have no system message (chat and preference records do)",
                param="recipe",
            )
        content = self.options.content
        for batch in counted(source, ctx, report):
            kept: Batch = []
            for record in batch:
                messages = _replaced(record[field], content)
                if messages == record[field]:
                    kept.append(record)
                    continue
                changed = {**record, field: messages}
                report.modified["system"] += 1
                report.example("system", {"text": clip(ctx.text(changed))})
                kept.append(changed)
            report.records_out += len(kept)
            yield kept
