"""The quickstart's task, support-ticket triage: seeded tickets with their true labels
(`fmops.quickstart.tickets`), the rules that decide the labels (`rules`), and the `ticket-triage` prompt
that states them (`prompt`).

>>> from fmops.quickstart import generate
>>> [t.label() for t in generate(2, seed=7)] == [t.label() for t in generate(2, seed=7)]
True
"""

from fmops.quickstart.rules import CATEGORY_NAMES, PRIORITY_NAMES, Clue
from fmops.quickstart.tickets import Ticket, generate

__all__ = ["CATEGORY_NAMES", "PRIORITY_NAMES", "Clue", "Ticket", "generate"]
