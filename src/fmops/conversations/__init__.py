"""The consumers' chat conversations: each belongs to one user in one project."""

from fmops.conversations.service import (
    ConversationService,
    ConversationView,
    MessageView,
    Page,
    ReplyFeedback,
)

__all__ = ["ConversationService", "ConversationView", "MessageView", "Page", "ReplyFeedback"]
