"""Feedback and scores on traces, from people, applications and evaluators."""

from fmops.feedback.schemas import FeedbackCreate, ScoreKind, ScoreSource, parse_feedback
from fmops.feedback.service import FeedbackService

__all__ = ["FeedbackCreate", "FeedbackService", "ScoreKind", "ScoreSource", "parse_feedback"]
