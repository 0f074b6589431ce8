"""Assistants: endpoints an engineer publishes to the chat, for the roles and users named.

`fmops.assistants.usage` reads an assistant's figures back from its endpoint's traces.
"""

from fmops.assistants.schemas import AssistantSpec, AssistantView
from fmops.assistants.service import AssistantService, Choice

__all__ = ["AssistantService", "AssistantSpec", "AssistantView", "Choice"]
