"""Job kinds: named handlers that workers run. Users choose a kind by name; nothing they send is code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from fmops.auth.roles import Role
from fmops.errors import UserError
from fmops.plugins import load_group

if TYPE_CHECKING:
    from fmops.jobs.context import JobContext

Handler = Callable[["JobContext", Any], dict[str, Any] | None]
ENTRY_POINT_GROUP = "fmops.jobs"


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Handler
    params: type[BaseModel] | None
    description: str
    min_role: Role

    def parse(self, raw: dict[str, Any]) -> Any:
        if self.params is None:
            if raw:
                raise UserError(f"job kind {self.name!r} takes no params", param="params")
            return None
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
            )
            raise UserError(f"invalid params for job kind {self.name!r}: {detail}", param="params") from None


_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    params: type[BaseModel] | None = None,
    description: str = "",
    min_role: Role = Role.engineer,
) -> Callable[[Handler], Handler]:
    """Register a handler: `run(ctx, params) -> result dict | None`."""

    def register(run: Handler) -> Handler:
        _KINDS[name] = JobKind(name, run, params, description or (run.__doc__ or "").strip(), min_role)
        return run

    return register


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def kinds() -> dict[str, JobKind]:
    load_group(ENTRY_POINT_GROUP)
    return dict(_KINDS)


def get_kind(name: str) -> JobKind:
    # A kind whose module is imported already (the evals job, run by `fmops eval run`) is found
    # without importing every plugin's module (curation's alone brings pyarrow: 75 MB).
    if name in _KINDS:
        return _KINDS[name]
    known = kinds()
    if name not in known:
        listing = ", ".join(sorted(known)) or "none are installed"
        raise UserError(f"unknown job kind {name!r}; known kinds: {listing}", param="kind")
    return known[name]
