"""The `ticket-triage` prompt, v1: instructions, the label rules (written from fmops.quickstart.rules, the
data the generator labels by) and the JSON schema of the answer; chat messages for one ticket and the
answer the generator's label expects.

The prompt is instructions only: the consumer sends the ticket as its user message, which the endpoint
appends after the prompt's. The fine-tuned model is served with `SHORT` (v2), one sentence instead of
the rules: it learnt them from the corrected traffic (the curation recipe's `system` step).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fmops.quickstart.rules import (
    CATEGORIES,
    CATEGORY_NAMES,
    CATEGORY_RULE,
    PRIORITIES,
    PRIORITY_NAMES,
    TONE_RULE,
)
from fmops.quickstart.tickets import Ticket

if TYPE_CHECKING:
    from fmops.prompts.schemas import PromptSpec

NAME = "ticket-triage"


def _system() -> str:
    categories = "\n".join(f"{i}. {name}: {what}" for i, (name, what) in enumerate(CATEGORIES, 1))
    priorities = "\n".join(f"- {name}: {what}" for name, what in PRIORITIES)
    return (
        "You triage customer support tickets. Answer with one JSON object and nothing else:\n"
        '{"category": C, "priority": P}\n\n'
        f"Category C. {CATEGORY_RULE} If several topics count, the first in this list wins:\n"
        f"{categories}\n\n"
        f"Priority P, the first that applies:\n{priorities}\n{TONE_RULE}"
    )


SYSTEM = _system()
SHORT = 'Triage this customer support ticket. Answer with one JSON object: {"category": C, "priority": P}.'
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": list(CATEGORY_NAMES)},
        "priority": {"type": "string", "enum": list(PRIORITY_NAMES)},
    },
    "required": ["category", "priority"],
    "additionalProperties": False,
}


def spec(*, model: str | None = None, short: bool = False) -> PromptSpec:
    """The prompt as `PromptService.push` takes it: v1 (the rules; labelled production) or, `short`,
    the one-sentence instruction the fine-tuned model is served with."""
    # Imported here: scripts that only generate chats (the fine-tuning benchmark's trainers) stay free
    # of pydantic and Jinja.
    from fmops.prompts.schemas import MessageTemplate, PromptSpec

    return PromptSpec(
        name=NAME,
        description="Support-ticket triage: category and priority as one JSON object",
        model=model,
        params={"temperature": 0, "max_tokens": 24},  # the answer is ~16 tokens
        messages=[MessageTemplate(role="system", content=SHORT if short else SYSTEM)],
        output_schema=SCHEMA,
        message="the instruction a fine-tuned model needs" if short else "instructions, label rules, schema",
        labels=[] if short else ["production"],
    )


def messages(text: str, *, short: bool = False) -> list[dict[str, str]]:
    """What the model reads for one ticket: the prompt's system message, then the consumer's."""
    return [{"role": "system", "content": SHORT if short else SYSTEM}, {"role": "user", "content": text}]


def answer(ticket: Ticket) -> str:
    """The expected answer, exactly: `{"category": "...", "priority": "..."}`."""
    return json.dumps(ticket.label())


def chat(ticket: Ticket) -> dict[str, list[dict[str, str]]]:
    """A prompt/completion training example, the shape fine-tuning and evals read."""
    return {
        "prompt": messages(ticket.text),
        "completion": [{"role": "assistant", "content": answer(ticket)}],
    }
