"""Online evaluators: rules that sample live traces and score them with `fmops.scorers`.

`service` manages the rules, `online` runs the cheap scorers beside the server as traces are
committed, and `judge_job` runs model-calling scorers (the LLM judge) as durable jobs.
"""

from fmops.evaluators.online import EVALUATOR_ATTRIBUTE, JUDGE_JOB, OnlineEvaluators
from fmops.evaluators.schemas import RuleCreate, RuleUpdate
from fmops.evaluators.service import EvaluatorService

__all__ = [
    "EVALUATOR_ATTRIBUTE",
    "JUDGE_JOB",
    "EvaluatorService",
    "OnlineEvaluators",
    "RuleCreate",
    "RuleUpdate",
]
