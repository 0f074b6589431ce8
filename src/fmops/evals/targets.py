"""What a suite calls, resolved: a model, a prompt version on a model, or an endpoint, and how one
case becomes the chat request sent to it through the gateway.

A case's `input` is text (one user message), a list of messages, `{messages: [...]}`, or a mapping
of variables (a prompt's or an endpoint's; a bare model gets the mapping as JSON text).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fmops.catalog import Catalog
from fmops.endpoints.plan import schema_format
from fmops.endpoints.service import EndpointService
from fmops.errors import FmopsError, NotFound, UserError
from fmops.evals.suite import Suite, TargetSpec, did_you_mean
from fmops.gateway.capabilities import capabilities
from fmops.prompts.checks import check_params
from fmops.prompts.schemas import PromptVersionView
from fmops.prompts.service import PromptService

JSON = dict[str, Any]


@dataclass(frozen=True)
class Target:
    index: int
    spec: TargetSpec
    model: str  # what the gateway is called with: a model alias or an endpoint's name
    prompt_version: int | None
    view: PromptVersionView | None
    params: JSON
    fingerprint: str  # what shapes the answer beyond the request body (an endpoint's config)
    prompted: bool = False  # a prompt turns the case into messages (the target's, or its endpoint's)
    # The prompt has no user turn (instructions only): the case's messages follow it, as an endpoint
    # appends its consumers' messages after its prompt's.
    appends: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    def request(self, case_input: Any, seed: int, metadata: Mapping[str, Any] | None = None) -> JSON:
        """The chat-completions body for one case (raises UserError when the input does not fit).

        A prompt (a target's, or an endpoint's) is filled with `input` (the text of the case, its last
        user message for a conversation), the case's `metadata.variables` and, for inline cases, the
        keys of an input mapping. A prompt of instructions only (no user turn) is followed by the
        case's messages, as an endpoint's prompt is followed by its consumer's."""
        messages, variables = _split(case_input)
        given = (metadata or {}).get("variables")
        values: JSON = {"input": _text(messages)} if messages is not None else {}
        values.update(given if isinstance(given, dict) else {})
        values.update(variables or {})
        body: JSON = {"seed": seed, **self.params, "model": self.model}
        if self.prompted:
            follow = list(messages or []) if self.appends else []
            if self.view is not None:
                body["messages"] = [*self.view.render(values), *follow]
            else:  # the endpoint renders its prompt
                body["variables"], body["messages"] = values, follow
            return body
        if messages is None:
            messages = [{"role": "user", "content": orjson.dumps(values).decode()}]
        body["messages"] = messages
        return body

    def cache_key(self, project_id: str, body: Mapping[str, Any]) -> str:
        raw = orjson.dumps([1, project_id, self.fingerprint, body], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()


def _split(value: Any) -> tuple[list[JSON] | None, JSON | None]:
    """(messages, variables) of a case input."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}], None
    if isinstance(value, list):
        return [m if isinstance(m, dict) else {"role": "user", "content": str(m)} for m in value], None
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            return list(value["messages"]), None
        return None, dict(value)
    return [{"role": "user", "content": "" if value is None else str(value)}], None


def _has_user_turn(view: PromptVersionView) -> bool:
    return any(m.get("role") == "user" for m in view.messages)


def _text(messages: list[JSON] | None) -> str:
    for message in reversed(messages or []):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


@dataclass
class TargetResolver:
    """Checks each target against the project (collecting every problem) and resolves it."""

    catalog: Catalog
    prompts: PromptService
    endpoints: EndpointService

    def resolve(self, project_id: str, suite: Suite, problems: list[str]) -> list[Target]:
        models = self.catalog.models(project_id)
        resolved: list[Target] = []
        for index, spec in enumerate(suite.targets):
            where = f"targets.{index}"
            count = len(problems)
            try:
                params = check_params(spec.parameters, f"{where}.parameters")
            except UserError as exc:
                problems.append(exc.message)
                params = {}
            if spec.endpoint is not None:
                target = self._endpoint(project_id, index, spec, params, where, problems)
            else:
                target = self._model(project_id, index, spec, params, models, where, problems)
            if target is not None and len(problems) == count:
                resolved.append(target)
        return resolved

    def _endpoint(
        self, project_id: str, index: int, spec: TargetSpec, params: JSON, where: str, problems: list[str]
    ) -> Target | None:
        assert spec.endpoint is not None
        try:
            view = self.endpoints.get(project_id, spec.endpoint)
        except NotFound:
            known = [e.name for e in self.endpoints.list(project_id)]
            problems.append(
                f"{where}.endpoint: no endpoint {spec.endpoint!r}{did_you_mean(spec.endpoint, known)}"
            )
            return None
        if not view.enabled:
            problems.append(f"{where}.endpoint: endpoint {spec.endpoint!r} is disabled")
            return None
        config = view.config.model_dump(mode="json")
        served = None
        if view.config.prompt is not None:
            try:
                served = self.prompts.get(
                    project_id, view.config.prompt, label=view.config.label or "production"
                )
            except FmopsError:
                served = None
        fingerprint = orjson.dumps(
            [config, served.version if served is not None else None], option=orjson.OPT_SORT_KEYS
        ).decode()
        prompted = view.config.prompt is not None
        appends = served is not None and not _has_user_turn(served)
        return Target(index, spec, spec.endpoint, None, None, params, fingerprint, prompted, appends)

    def _model(
        self,
        project_id: str,
        index: int,
        spec: TargetSpec,
        params: JSON,
        models: Mapping[str, Any],
        where: str,
        problems: list[str],
    ) -> Target | None:
        view = None
        if spec.prompt is not None:
            view = self._prompt(project_id, spec, where, problems)
            if view is None:
                return None
        model = spec.model or (view.model if view is not None else None)
        if model is None:
            problems.append(f"{where}.model: prompt {spec.prompt!r} names no model; set model")
            return None
        if model not in models:
            problems.append(f"{where}.model: no model {model!r} in this project{did_you_mean(model, models)}")
            return None
        merged = {**(view.params if view is not None else {}), **params}
        if view is not None and view.output_schema is not None and "response_format" not in merged:
            entry = models[model]
            if capabilities(entry).json_schema:
                # As an endpoint serving this prompt asks it: the same answer the evaluation measures.
                merged["response_format"] = schema_format(view.output_schema)
        version = view.version if view is not None else None
        appends = view is not None and not _has_user_turn(view)
        return Target(index, spec, model, version, view, merged, "", view is not None, appends)

    def _prompt(
        self, project_id: str, spec: TargetSpec, where: str, problems: list[str]
    ) -> PromptVersionView | None:
        assert spec.prompt is not None
        known = [p.name for p in self.prompts.list(project_id)]
        if spec.prompt not in known:
            problems.append(f"{where}.prompt: no prompt {spec.prompt!r}{did_you_mean(spec.prompt, known)}")
            return None
        try:
            return self.prompts.resolve(project_id, spec.prompt, spec.prompt_ref or "latest")
        except FmopsError as exc:
            problems.append(f"{where}.prompt: {exc.message}")
            return None
