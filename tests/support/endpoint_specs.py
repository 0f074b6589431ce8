"""The prompt the HTTP endpoint and experiment tests deploy: two versions, a company and a question."""

from __future__ import annotations

from typing import Any

VARIABLES = {"company": "Acme", "question": "When are you open?"}
PROMPT: dict[str, Any] = {
    "name": "support",
    "model": "small",
    "messages": [
        {"role": "system", "content": "You answer for {{ company }}. Be brief."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "labels": ["production"],
}
V2 = [{"role": "system", "content": "You answer for {{ company }} in one word."}, PROMPT["messages"][1]]
