"""What consumers tailor the chat with: custom instructions and a personal prompt library (issue 18)."""

from fmops.tailoring.schemas import InstructionsView, SavedPromptView
from fmops.tailoring.service import TailoringService

__all__ = ["InstructionsView", "SavedPromptView", "TailoringService"]
