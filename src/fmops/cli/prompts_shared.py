"""`fmops prompts promote-shared`: a prompt a consumer shared from the chat, into the registry."""

from __future__ import annotations

import typer
from rich.markup import escape

from fmops.auth import DEFAULT_PROJECT
from fmops.cli.common import actor, console, local_platform, project_id_of
from fmops.errors import NotFound, UserError
from fmops.tailoring import TailoringService


def register(app: typer.Typer) -> None:
    """Add `promote-shared` to the `fmops prompts` group."""

    @app.command("promote-shared")
    def promote_shared(
        name: str = typer.Argument(..., help="The shared prompt's name (what follows / in the chat)"),
        author: str | None = typer.Option(
            None, "--author", help="Whose, when several shared one of that name"
        ),
        as_name: str | None = typer.Option(
            None, "--as", help="The registry prompt to create or add a version to (default: NAME)"
        ),
        project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
    ) -> None:
        """Push a prompt shared in the chat into the registry (a new prompt or version), its author kept."""
        platform = local_platform()
        project_id = project_id_of(project)
        service = TailoringService(platform.store)
        found = service.find_shared(project_id, name, author)
        if not found:
            whose = f" by {author}" if author else ""
            raise NotFound(f"no prompt named /{name} is shared{whose} in project {project}")
        if len(found) > 1:
            raise UserError(f"several people shared a /{name}: name one with --author")
        promoted = service.promote(
            project_id, found[0], platform.catalog, registry_name=as_name, actor=actor()
        )
        state = "new version" if promoted.created else "unchanged, version"
        console.print(
            f"{escape(promoted.prompt)}: {state} {promoted.version} (author {escape(promoted.author)})",
            highlight=False,
        )
