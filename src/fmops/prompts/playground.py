"""The playground: run inputs through prompt versions × models side by side.

A grid of cells, one per (input, target): the target's prompt version is rendered with the input's
variables, the input's messages are appended, and the call goes through the gateway like any other
(limits, budgets, cost, a span). What is wrong with the request as a whole (an unknown prompt,
version or model, a bad parameter) is a 400 naming the field before anything runs; what goes wrong
in one cell (a missing variable, an upstream error) is reported in that cell, and the others run.

Each cell's span carries `fmops.playground: true` and the prompt's name and version, so playground
calls can be told apart from production traffic.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fmops.errors import FmopsError, NotFound, UserError
from fmops.gateway.schemas import ChatCompletionRequest, Message
from fmops.gateway.spans import CallRecord
from fmops.numbers import NumbersOnly
from fmops.prompts.checks import check_params
from fmops.prompts.schemas import LabelName, ModelAlias, PromptName, PromptVersionView

if TYPE_CHECKING:
    from fmops.auth import Principal
    from fmops.catalog import Catalog
    from fmops.gateway.service import Gateway
    from fmops.prompts.service import PromptService

MAX_INPUTS = 20
MAX_TARGETS = 10
MAX_CELLS = 50
CONCURRENCY = 4  # cells in flight at once: a grid must not crowd out the project's live traffic
PLAYGROUND_ATTRIBUTE = "fmops.playground"


Version = Annotated[int, Field(ge=1, le=2**31 - 1), NumbersOnly]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class PlaygroundInput(_Strict):
    variables: dict[str, Any] = Field(
        default_factory=dict, max_length=200, description="Values for the prompt's variables"
    )
    messages: list[Message] = Field(
        default_factory=list, max_length=100, description="Appended after the prompt's rendered messages"
    )


class PlaygroundTarget(_Strict):
    prompt: PromptName | None = Field(
        None, description="A prompt to render; none to send the messages as they are"
    )
    version: Version | None = Field(None, description="Default: the newest")
    label: LabelName | None = None
    model: ModelAlias | None = Field(None, description="Default: the prompt version's model")
    params: dict[str, Any] = Field(
        default_factory=dict, max_length=50, description="Chat parameters over the prompt version's"
    )

    @model_validator(mode="after")
    def _coherent(self) -> PlaygroundTarget:
        if self.version is not None and self.label is not None:
            raise ValueError("give version or label, not both")
        if self.prompt is None and (self.version is not None or self.label is not None):
            raise ValueError("version and label choose a version of `prompt`; set prompt too")
        if self.prompt is None and self.model is None:
            raise ValueError("give a prompt, a model, or both")
        return self


class PlaygroundRequest(_Strict):
    inputs: list[PlaygroundInput] = Field(min_length=1, max_length=MAX_INPUTS)
    targets: list[PlaygroundTarget] = Field(
        min_length=1, max_length=MAX_TARGETS, description=f"At most {MAX_CELLS} cells: inputs × targets"
    )

    @field_validator("targets")
    @classmethod
    def _small(cls, targets: list[PlaygroundTarget], info: ValidationInfo) -> list[PlaygroundTarget]:
        # On the field, so the 400 names `targets` (checked after `inputs`, declared first).
        cells = len(info.data.get("inputs") or []) * len(targets)
        if cells > MAX_CELLS:
            raise ValueError(f"{cells} cells (inputs × targets); at most {MAX_CELLS}: fewer of either")
        return targets


@dataclass(frozen=True)
class Target:
    """A target resolved: the concrete version, model and merged params a cell calls."""

    prompt: str | None
    version: int | None
    model: str
    params: dict[str, Any]
    view: PromptVersionView | None = field(default=None, repr=False, compare=False)


@dataclass
class Cell:
    input: int
    target: int
    output: str | None = None
    message: dict[str, Any] | None = None  # the whole assistant message (tool calls, refusals)
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    trace_id: str | None = None
    error: str | None = None
    error_code: str | None = None


@dataclass
class PlaygroundResult:
    targets: list[Target]
    cells: list[Cell]  # input-major: every target of input 0, then input 1, ...


class Playground:
    def __init__(self, prompts: PromptService, catalog: Catalog, gateway: Gateway) -> None:
        self.prompts = prompts
        self.catalog = catalog
        self.gateway = gateway

    async def run(self, principal: Principal, request: PlaygroundRequest) -> PlaygroundResult:
        targets = await asyncio.to_thread(self.resolve, principal.project_id, request.targets)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int, j: int) -> Cell:
            async with slots:
                return await self._cell(principal, i, request.inputs[i], j, targets[j])

        cells = [one(i, j) for i in range(len(request.inputs)) for j in range(len(targets))]
        return PlaygroundResult(targets=targets, cells=list(await asyncio.gather(*cells)))

    def resolve(self, project_id: str, targets: list[PlaygroundTarget]) -> list[Target]:
        """Each target's version, model and params; a 400 naming the field of the first bad one."""
        models = self.catalog.models(project_id)
        resolved = []
        for j, target in enumerate(targets):
            where = f"targets.{j}"
            view = None
            if target.prompt is not None:
                try:
                    view = self.prompts.get(
                        project_id, target.prompt, version=target.version, label=target.label
                    )
                except NotFound as exc:
                    field_name = "label" if target.label else ("version" if target.version else "prompt")
                    raise UserError(
                        f"{where}.{field_name}: {exc.message}", param=f"{where}.{field_name}"
                    ) from None
            model = target.model or (view.model if view else None)
            if model is None:
                raise UserError(
                    f"{where}.model: prompt {target.prompt!r} (version {view.version if view else '?'}) "
                    "names no model; set one",
                    param=f"{where}.model",
                )
            if model not in models:
                known = ", ".join(sorted(models)) or "none"
                raise UserError(
                    f"{where}.model: model {model!r} does not exist in this project; known models: {known}",
                    param=f"{where}.model",
                )
            params = check_params(target.params, f"{where}.params")
            merged = {**(view.params if view else {}), **params}
            resolved.append(Target(target.prompt, view.version if view else None, model, merged, view))
        return resolved

    async def _cell(
        self, principal: Principal, i: int, given: PlaygroundInput, j: int, target: Target
    ) -> Cell:
        cell = Cell(input=i, target=j)
        started = time.perf_counter()
        try:
            messages = target.view.render(given.variables) if target.view is not None else []
            messages += [m.model_dump(exclude_none=True) for m in given.messages]
            if not messages:
                raise UserError("nothing to send: the input has no messages and the target no prompt")
            request = _request(target, messages)
            result = await self.gateway.chat(principal, request, annotate=_tagger(target))
        except FmopsError as exc:
            cell.latency_ms = (time.perf_counter() - started) * 1000
            cell.error, cell.error_code, cell.trace_id = exc.message, exc.code or exc.error_type, exc.trace_id
            return cell
        record, body = result.record, result.body
        choice = (body.get("choices") or [{}])[0]
        cell.message = choice.get("message")
        cell.output = (cell.message or {}).get("content")
        cell.latency_ms = (time.perf_counter() - started) * 1000
        cell.input_tokens, cell.output_tokens = record.input_tokens, record.output_tokens
        cell.cost, cell.trace_id = record.cost, record.trace_id
        return cell


def _request(target: Target, messages: list[dict[str, Any]]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(
            {**target.params, "model": target.model, "messages": messages}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{where}: {first['msg']}", param=where) from None


def _tagger(target: Target) -> Any:
    def tag(record: CallRecord) -> None:
        record.attributes[PLAYGROUND_ATTRIBUTE] = True
        record.prompt_name, record.prompt_version = target.prompt, target.version

    return tag


__all__ = [
    "Cell",
    "Playground",
    "PlaygroundInput",
    "PlaygroundRequest",
    "PlaygroundResult",
    "PlaygroundTarget",
    "Target",
]
