"""Span kinds and attribute names that writers and readers of traces share.

Kept apart from `query` so that code which only writes such spans (the guardrails engine, in every
gateway and eval run) does not import the trace explorer's query builder."""

GUARDRAIL_KIND = "guardrail"
GUARDRAIL_OUTCOME = "fmops.guardrail.outcome"
