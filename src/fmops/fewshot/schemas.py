"""The endpoint option, as written in an endpoint's spec:

```yaml
fewshot: {dataset: tickets@3, k: 3, min_similarity: 0.2}
```
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fmops.numbers import NumbersOnly

# A pinned version only: a version never changes, so its index is built once and never again.
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}@[1-9][0-9]{0,8}$"
_REF = re.compile(REF_PATTERN)
MAX_K = 20


class FewshotSpec(BaseModel):
    """Insert the `k` examples of a dataset version most similar to each call's last user message
    (MiniLM embeddings) as user/assistant pairs before that message."""

    model_config = ConfigDict(extra="forbid")

    dataset: Annotated[str, StringConstraints(max_length=110)] = Field(
        description="A pinned dataset version, NAME@VERSION (chat, completion, preference or eval records)",
        json_schema_extra={"pattern": REF_PATTERN},
    )
    k: Annotated[int, Field(ge=1, le=MAX_K), NumbersOnly] = Field(3, description="Examples per call (1-20)")
    min_similarity: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False), NumbersOnly] = Field(
        0.0, description="Leave out examples whose cosine similarity to the message is below this"
    )

    @field_validator("dataset")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not _REF.fullmatch(value):
            raise ValueError(
                f"{value!r} is not NAME@VERSION: pin a version (e.g. tickets@3); its example index "
                "is built once, since a version never changes"
            )
        return value

    @property
    def name(self) -> str:
        return self.dataset.rpartition("@")[0]

    @property
    def version(self) -> int:
        return int(self.dataset.rpartition("@")[2])
