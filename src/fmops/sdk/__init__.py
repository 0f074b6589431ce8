"""The fmops Python SDK: trace an application's own steps and talk to an fmops server.

    import fmops

    client = fmops.Client()  # FMOPS_BASE_URL, FMOPS_API_KEY

    @fmops.observe()
    def answer(question: str) -> str:
        with fmops.span("retrieve", kind="retriever") as s:
            s.set_output(docs := search(question))
        reply = client.openai.chat.completions.create(model="support-bot", messages=[...])
        return reply.choices[0].message.content

    prompt = client.prompts.get("support", label="production")  # cached 60 s
    messages = prompt.render(company="Acme", question="Where is my order?")

Spans are sent to the server's OTLP endpoint in background batches, and flushed at exit.
"""

from fmops.sdk.client import Client
from fmops.sdk.decorator import observe
from fmops.sdk.errors import APIConnectionError, APIError, FmopsSDKError
from fmops.sdk.handle import SpanHandle, current_span
from fmops.sdk.models import Score, SpanNode, SpanSummary, Trace, TracePage
from fmops.sdk.prompts import Prompt, PromptSummary
from fmops.sdk.spans import span
from fmops.sdk.traces import TraceFilters
from fmops.sdk.tracing import configure, flush, shutdown

__all__ = [
    "APIConnectionError",
    "APIError",
    "Client",
    "FmopsSDKError",
    "Prompt",
    "PromptSummary",
    "Score",
    "SpanHandle",
    "SpanNode",
    "SpanSummary",
    "Trace",
    "TraceFilters",
    "TracePage",
    "configure",
    "current_span",
    "flush",
    "observe",
    "shutdown",
    "span",
]
