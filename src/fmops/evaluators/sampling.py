"""Which traces a rule samples: decided by a hash of the trace id, not by chance.

Every replica (and a retry of the same span) reaches the same decision, and rules with different
rates sample nested sets: the traces a 5% rule scores are among those a 10% rule scores, so scores
of different rules can be compared on the same traces.
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def sample_point(trace_id: str) -> float:
    """Where a trace falls in [0, 1), uniformly, whatever its id looks like."""
    digest = hashlib.blake2b(trace_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def sampled(trace_id: str, rate: float) -> bool:
    return rate >= 1.0 or sample_point(trace_id) < rate
