"""Annotation queues: traces sampled by a filter for people to review one item at a time."""

from fmops.annotation.schemas import DecisionCreate, LabelField, QueueCreate
from fmops.annotation.service import AnnotationService, Progress, QueueView

__all__ = ["AnnotationService", "DecisionCreate", "LabelField", "Progress", "QueueCreate", "QueueView"]
