"""The `ticket-triage` prompt: a valid prompt spec that renders to the messages a consumer sends, with an
answer schema the generator's labels satisfy."""

from __future__ import annotations

import json

import jsonschema

from fmops.prompts.templates import render_messages
from fmops.quickstart.prompt import NAME, SCHEMA, SHORT, SYSTEM, answer, chat, messages, spec
from fmops.quickstart.rules import CATEGORIES, PRIORITIES
from fmops.quickstart.tickets import generate


def test_the_spec_renders_to_the_messages_for_a_ticket() -> None:
    ticket = generate(1, seed=9)[0]
    pushed = spec(model="smollm2-135m-instruct")
    assert pushed.name == NAME
    assert pushed.model == "smollm2-135m-instruct"
    assert pushed.output_schema == SCHEMA
    assert pushed.labels == ["production"]
    rendered = render_messages([m.model_dump() for m in pushed.messages], {})
    # The endpoint appends the consumer's message (the ticket) after the prompt's.
    assert [*rendered, {"role": "user", "content": ticket.text}] == messages(ticket.text)
    short = spec(short=True)
    assert short.labels == []
    assert short.output_schema == SCHEMA
    assert render_messages([m.model_dump() for m in short.messages], {}) == messages("x", short=True)[:1]
    assert len(SHORT) < len(SYSTEM) / 5


def test_the_system_prompt_states_every_rule() -> None:
    for name, what in CATEGORIES + PRIORITIES:
        assert f"{name}: {what}" in SYSTEM
    assert '{"category": C, "priority": P}' in SYSTEM
    assert len(SYSTEM) < 1600  # it rides along with every ticket: a small model's context is short


def test_answers_match_the_schema_and_the_label() -> None:
    for ticket in generate(50, seed=9):
        text = answer(ticket)
        jsonschema.validate(json.loads(text), SCHEMA)
        assert json.loads(text) == ticket.label()
        example = chat(ticket)
        assert example["prompt"][1] == {"role": "user", "content": ticket.text}
        assert example["completion"] == [{"role": "assistant", "content": text}]
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
