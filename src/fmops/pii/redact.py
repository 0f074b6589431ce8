"""Replace what `detect` found: `redact` puts a `[TYPE]` placeholder in its place, `mask` keeps its shape
(letters and digits become `*`, separators stay; a card or IBAN keeps its last four, as receipts do)."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from fmops.pii.detector import Finding, PiiType, detect


class Action(StrEnum):
    redact = "redact"
    mask = "mask"


_KEEP_LAST4 = frozenset({PiiType.credit_card, PiiType.iban})


def placeholder(kind: PiiType) -> str:
    return f"[{kind.value.upper()}]"


def mask_span(kind: PiiType, span: str) -> str:
    keep_from = len(span)
    if kind in _KEEP_LAST4:
        seen = 0
        for i in range(len(span) - 1, -1, -1):
            if span[i].isalnum():
                seen += 1
                if seen == 4:
                    keep_from = i
                    break
    return "".join("*" if ch.isalnum() and i < keep_from else ch for i, ch in enumerate(span))


def apply(text: str, findings: list[Finding], action: Action | str = Action.redact) -> str:
    """`text` with each finding replaced; `findings` as `detect` returns them (in order, not overlapping)."""
    action = Action(action)
    out: list[str] = []
    pos = 0
    for f in findings:
        out.append(text[pos : f.start])
        span = text[f.start : f.end]
        out.append(placeholder(f.type) if action is Action.redact else mask_span(f.type, span))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def redact(text: str, action: Action | str = Action.redact, types: Collection[PiiType] | None = None) -> str:
    """`text` with every finding (of `types`, default all) replaced by a placeholder or masked."""
    findings = detect(text, types)
    return apply(text, findings, action) if findings else text
