"""Personal data and secrets in text: one detector for dataset curation and guardrails alike.

>>> from fmops.pii import detect, redact
>>> redact("mail ada@example.com or call +44 20 7946 0958")
'mail [EMAIL] or call [PHONE]'
"""

from fmops.pii.detector import STRUCTURED, Finding, PiiType, detect, parse_types
from fmops.pii.redact import Action, apply, mask_span, placeholder, redact

__all__ = [
    "STRUCTURED",
    "Action",
    "Finding",
    "PiiType",
    "apply",
    "detect",
    "mask_span",
    "parse_types",
    "placeholder",
    "redact",
]
