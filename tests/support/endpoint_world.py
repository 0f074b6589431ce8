"""A project with models on the mock upstream and prompts, for endpoint tests on both backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fmops.auth import Principal
from fmops.catalog import ModelSpec
from fmops.endpoints.schemas import EndpointSpec, EndpointUpdate
from fmops.endpoints.service import EndpointService, EndpointView
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.service import ChatResult
from fmops.platform import Platform
from fmops.prompts.schemas import PromptSpec
from fmops.prompts.service import PromptService
from support.mock_upstream import MockUpstream

SUPPORT: dict[str, Any] = {
    "name": "support",
    "model": "small",
    "params": {"temperature": 0.2, "max_tokens": 200},
    "messages": [
        {"role": "system", "content": "You answer for {{ company }}. Be brief."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "labels": ["production"],
}
EXTRACT: dict[str, Any] = {
    "name": "extract",
    "model": "strict",
    "messages": [{"role": "system", "content": 'Answer as JSON: {"answer": <text>}.'}],
    "output_schema": {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    },
    "labels": ["production"],
}


@dataclass
class EndpointWorld:
    platform: Platform
    project: str
    other: str
    principal: Principal
    prompts: PromptService
    endpoints: EndpointService
    mock: MockUpstream

    def create(self, project: str | None = None, **spec: Any) -> EndpointView:
        body = EndpointSpec.model_validate(spec)
        return self.endpoints.create(project or self.project, body, actor="ann")

    def update(self, name: str, **changes: Any) -> EndpointView:
        return self.endpoints.update(self.project, name, EndpointUpdate.model_validate(changes), actor="ann")

    def push(self, spec: dict[str, Any], **changes: Any) -> int:
        pushed, _ = self.prompts.push(
            self.project, PromptSpec.model_validate({**spec, **changes}), author="ann", author_key_id=None
        )
        return pushed.version

    async def chat(self, session_id: str | None = None, **body: Any) -> ChatResult:
        request = ChatCompletionRequest.model_validate({"messages": [], **body})
        return await self.platform.gateway.chat(self.principal, request, session_id)

    def upstream(self) -> list[dict[str, Any]]:
        """Bodies the mock upstream received, oldest first."""
        return [r["body"] for r in self.mock.state.requests]


def endpoint_world(platform: Platform, mock: MockUpstream) -> EndpointWorld:
    mock.reset()
    auth = platform.auth
    key = auth.bootstrap(platform.settings.home / "admin.key")
    assert key is not None
    principal = auth.authenticate(key)
    other = auth.create_project("other").id
    for project in (principal.project_id, other):
        for alias, capabilities in (("small", {}), ("other", {}), ("strict", {"json_schema": True})):
            spec = ModelSpec(
                alias=alias,
                provider="openai",
                model=f"up-{alias}",
                base_url=mock.url,
                capabilities=capabilities,
                max_retries=0,
            )
            platform.catalog.add(project, spec, trusted=True)
    prompts = PromptService(platform.store, platform.catalog)
    world = EndpointWorld(
        platform,
        principal.project_id,
        other,
        principal,
        prompts,
        EndpointService(platform.store, platform.catalog, prompts),
        mock,
    )
    world.push(SUPPORT)
    world.push(
        SUPPORT,
        messages=[
            {"role": "system", "content": "You answer for {{ company }} in one word."},
            {"role": "user", "content": "{{ question }}"},
        ],
        labels=["staging"],
    )
    world.push(EXTRACT)
    return world
