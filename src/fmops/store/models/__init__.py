"""Every table fmops stores; importing this module registers them all on `Base.metadata`."""

from fmops.store.models.alerts import AlertEvent, AlertRule
from fmops.store.models.annotation import AnnotationDecision, AnnotationItem, AnnotationQueue
from fmops.store.models.assistants import Assistant, AssistantConversation
from fmops.store.models.auth import ApiKey, Membership, Project, User
from fmops.store.models.base import Base
from fmops.store.models.catalog import CatalogModel
from fmops.store.models.datasets import Dataset, DatasetVersion
from fmops.store.models.endpoints import Endpoint, EndpointEvent, RegistryGeneration
from fmops.store.models.evals import EvalCache, EvalResult, EvalRun, EvalSuite
from fmops.store.models.evaluators import EvaluatorRule
from fmops.store.models.feedback import Score
from fmops.store.models.finetunes import Finetune
from fmops.store.models.guardrails import GuardrailPolicy
from fmops.store.models.jobs import Job, JobLog
from fmops.store.models.optimizers import PromptCandidate, PromptOptimization
from fmops.store.models.prompts import Prompt, PromptLabel, PromptVersion
from fmops.store.models.rollups import StatsRollup, StatsRollupFacet, StatsRollupHour  # hourly stats roll-ups
from fmops.store.models.tailoring import ConversationTailoring, CustomInstructions, SavedPrompt
from fmops.store.models.traces import Span, SpanTag
from fmops.store.models.usage import Spend
from fmops.store.models.web import Conversation, ConversationMessage, WebSession

__all__ = [
    "AlertEvent",
    "AlertRule",
    "AnnotationDecision",
    "AnnotationItem",
    "AnnotationQueue",
    "ApiKey",
    "Assistant",
    "AssistantConversation",
    "Base",
    "CatalogModel",
    "Conversation",
    "ConversationMessage",
    "ConversationTailoring",
    "CustomInstructions",
    "Dataset",
    "DatasetVersion",
    "Endpoint",
    "EndpointEvent",
    "EvalCache",
    "EvalResult",
    "EvalRun",
    "EvalSuite",
    "EvaluatorRule",
    "Finetune",
    "GuardrailPolicy",
    "Job",
    "JobLog",
    "Membership",
    "Project",
    "Prompt",
    "PromptCandidate",
    "PromptLabel",
    "PromptOptimization",
    "PromptVersion",
    "RegistryGeneration",
    "SavedPrompt",
    "Score",
    "Span",
    "SpanTag",
    "Spend",
    "StatsRollup",
    "StatsRollupFacet",
    "StatsRollupHour",
    "User",
    "WebSession",
]
