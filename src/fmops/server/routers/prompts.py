"""The prompt registry of the caller's project: push versions, read, diff, render, move labels, export.

Reading and rendering need a consumer key; pushing, labelling and deleting need an engineer.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Response

from fmops.auth import Role
from fmops.platform import Platform, PlatformDep
from fmops.prompts.schemas import LABEL_PATTERN, NAME_PATTERN, PromptVersionView
from fmops.prompts.service import PromptService
from fmops.server.deps import PrincipalDep, gate, text_query
from fmops.server.errors import error_responses
from fmops.server.schemas.prompts import (
    LabelSet,
    PromptDiff,
    PromptPush,
    PromptPushed,
    PromptRender,
    PromptRendered,
    PromptSummaryPublic,
    PromptVersionPublic,
)

router = APIRouter(tags=["prompts"], dependencies=gate(Role.consumer))
Name = Path(pattern=NAME_PATTERN, description="The prompt's name")
Label = Path(pattern=LABEL_PATTERN, description="A label: production, staging, ...")
YAML = "application/yaml"
_SPEC_REF = {"$ref": "#/components/schemas/PromptPush"}


def _service(platform: Platform) -> PromptService:
    return PromptService(platform.store, platform.catalog)


def _public(view: PromptVersionView) -> PromptVersionPublic:
    return PromptVersionPublic.model_validate(view)


@router.get("/api/prompts", response_model=list[PromptSummaryPublic], summary="Prompts, by name")
def list_prompts(platform: PlatformDep, principal: PrincipalDep) -> list[PromptSummaryPublic]:
    return [PromptSummaryPublic.model_validate(p) for p in _service(platform).list(principal.project_id)]


@router.post(
    "/api/prompts",
    response_model=PromptPushed,
    status_code=201,
    summary="Push a prompt: a new version, or the newest one when nothing changed (200)",
    dependencies=gate(Role.engineer),
    responses={200: {"model": PromptPushed, "description": "Same content as the newest version: no new one"}},
    openapi_extra={"requestBody": {"content": {YAML: {"schema": _SPEC_REF}}}},
)
def push_prompt(
    body: PromptPush, response: Response, platform: PlatformDep, principal: PrincipalDep
) -> PromptPushed:
    view, created = _service(platform).push(
        principal.project_id, body, author=principal.user_name, author_key_id=principal.key_id
    )
    if not created:
        response.status_code = 200
    return PromptPushed.model_validate({**_public(view).model_dump(), "created": created})


@router.get(
    "/api/export/prompts",
    response_class=Response,
    summary="Prompts as YAML (newest versions): one prompt, or a list of every prompt; push reads them back",
    responses={
        200: {
            "description": "With `name`: that prompt's spec; without: a list of every prompt's spec",
            "content": {YAML: {"schema": {"anyOf": [_SPEC_REF, {"type": "array", "items": _SPEC_REF}]}}},
        },
        **error_responses(404),
    },
)
def export_prompts(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str | None = Query(None, pattern=NAME_PATTERN, description="Only this prompt"),
) -> Response:
    text = _service(platform).export(principal.project_id, name)
    filename = f"{name or 'prompts'}.yaml"
    return Response(
        text, media_type=YAML, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/api/prompts/{name}", response_model=PromptVersionPublic, summary="One version of a prompt")
def get_prompt(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = Name,
    version: int | None = Query(None, ge=1, le=2**31 - 1),
    label: str | None = text_query(100, "A label, or `latest`; neither: the newest version"),
) -> PromptVersionPublic:
    return _public(_service(platform).get(principal.project_id, name, version=version, label=label))


@router.delete(
    "/api/prompts/{name}",
    response_model=PromptSummaryPublic,
    summary="Delete a prompt with every version and label",
    dependencies=gate(Role.engineer),
    responses=error_responses(409),
)
def delete_prompt(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> PromptSummaryPublic:
    return PromptSummaryPublic.model_validate(_service(platform).delete(principal.project_id, name))


@router.get(
    "/api/prompts/{name}/versions",
    response_model=list[PromptVersionPublic],
    summary="Every version of a prompt, newest first",
)
def list_versions(
    platform: PlatformDep, principal: PrincipalDep, name: str = Name
) -> list[PromptVersionPublic]:
    return [_public(v) for v in _service(platform).versions(principal.project_id, name)]


@router.get("/api/prompts/{name}/diff", response_model=PromptDiff, summary="Unified diff of two versions")
def diff_versions(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = Name,
    a: str = Query(min_length=1, max_length=100, pattern=r"^[^\x00]*$", description="Version or label"),
    b: str = Query(min_length=1, max_length=100, pattern=r"^[^\x00]*$", description="Version or label"),
) -> PromptDiff:
    old, new, text = _service(platform).compare(principal.project_id, name, a, b)
    return PromptDiff(name=name, a=a, b=b, from_version=old.version, to_version=new.version, diff=text)


@router.put(
    "/api/prompts/{name}/labels/{label}",
    response_model=PromptVersionPublic,
    summary="Point a label at a version; endpoints serving the label switch at once",
    dependencies=gate(Role.engineer),
)
def set_label(
    body: LabelSet, platform: PlatformDep, principal: PrincipalDep, name: str = Name, label: str = Label
) -> PromptVersionPublic:
    view = _service(platform).set_label(
        principal.project_id, name, label, body.version, actor=principal.user_name
    )
    return _public(view)


@router.delete(
    "/api/prompts/{name}/labels/{label}",
    status_code=204,
    summary="Remove a label (a 409 while an endpoint serves it)",
    dependencies=gate(Role.engineer),
    responses=error_responses(409),
)
def remove_label(
    platform: PlatformDep, principal: PrincipalDep, name: str = Name, label: str = Label
) -> Response:
    _service(platform).remove_label(principal.project_id, name, label, actor=principal.user_name)
    return Response(status_code=204)


@router.post(
    "/api/prompts/{name}/render",
    response_model=PromptRendered,
    summary="Render a version's messages with variables (missing ones are a 400 naming them)",
)
def render_prompt(
    body: PromptRender, platform: PlatformDep, principal: PrincipalDep, name: str = Name
) -> PromptRendered:
    view = _service(platform).get(principal.project_id, name, version=body.version, label=body.label)
    return PromptRendered(
        name=view.name,
        version=view.version,
        messages=view.render(body.variables),
        model=view.model,
        params=view.params,
        output_schema=view.output_schema,
    )
