"""The prompt registry on both backends: immutable versions, labels that move (and bump the registry
generation), re-pushes that change nothing, diffs, YAML export that reads back identical, and bad
specs refused with a 400 that names the field."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from fmops.catalog import ModelSpec
from fmops.endpoints.generation import current
from fmops.errors import Conflict, NotFound, UserError
from fmops.platform import Platform
from fmops.prompts.files import load_specs, spec_from
from fmops.prompts.schemas import PromptSpec
from fmops.prompts.service import PromptService
from fmops.prompts.templates import TemplateError
from fmops.settings import load_settings
from fmops.store import Store, upgrade
from fmops.store.models import Endpoint, Prompt, PromptVersion
from support.databases import postgres_database, sqlite_url

SUPPORT: dict[str, Any] = {
    "name": "support",
    "description": "Answers support questions",
    "model": "small",
    "params": {"temperature": 0.2, "max_tokens": 200},
    "messages": [
        {"role": "system", "content": "You answer for {{ company }}.\nBe brief."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "message": "first cut",
}


@dataclass
class World:
    platform: Platform
    service: PromptService
    project: str
    other: str

    def push(self, project: str | None = None, **changes: Any) -> tuple[Any, bool]:
        spec = PromptSpec.model_validate({**SUPPORT, **changes})
        return self.service.push(project or self.project, spec, author="ann", author_key_id="k1")

    def generation(self, project: str | None = None) -> int:
        with self.platform.store.session() as session:
            return current(session, project or self.project)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One database per backend for the module (each test works in projects of its own): creating
    a PostgreSQL database and migrating it per test would cost more than the tests themselves."""
    home = tmp_path_factory.mktemp("prompts")
    with contextlib.ExitStack() as stack:
        url = sqlite_url(home) if request.param == "sqlite" else stack.enter_context(postgres_database())
        store = Store(url)
        stack.callback(store.dispose)
        upgrade(store)
        settings = load_settings({"home": home / "home", "database_url": url})
        yield Platform.build(settings, store)


@pytest.fixture
def world(backend: Platform) -> World:
    projects = [backend.auth.create_project(f"p-{uuid.uuid4().hex[:10]}").id for _ in range(2)]
    for project_id in projects:
        spec = ModelSpec(alias="small", provider="openai", model="m", base_url="http://127.0.0.1:9/v1")
        backend.catalog.add(project_id, spec, trusted=True)
    return World(backend, PromptService(backend.store, backend.catalog), *projects)


def test_versions_are_immutable_and_a_repush_is_a_noop(world: World) -> None:
    first, created = world.push()
    assert created
    assert (first.name, first.version, first.variables, first.model, first.author, first.message) == (
        "support",
        1,
        ["company", "question"],
        "small",
        "ann",
        "first cut",
    )
    assert first.params == {"temperature": 0.2, "max_tokens": 200}
    # The same content again (another commit message, another author) is the same version.
    again, created = world.push(message="no change")
    assert (again.version, created, again.message) == (1, False, "first cut")

    changed = [*SUPPORT["messages"][:1], {"role": "user", "content": "Q: {{ question }}"}]
    second, created = world.push(messages=changed, message="prefix the question", description="v2 text")
    assert (second.version, created) == (2, True)
    assert world.service.get(world.project, "support").version == 2  # neither given: the newest
    assert world.service.get(world.project, "support", label="latest").version == 2
    old = world.service.get(world.project, "support", version=1)
    assert old.messages == SUPPORT["messages"]  # version 1 is untouched by the push of version 2
    assert (
        old.render({"company": "Acme", "question": "Where?"})[0]["content"]
        == "You answer for Acme.\nBe brief."
    )
    assert [v.version for v in world.service.versions(world.project, "support")] == [2, 1]
    [summary] = world.service.list(world.project)
    assert (summary.name, summary.latest_version, summary.description) == ("support", 2, "v2 text")

    # A row is never rewritten: the stored content of version 1 still hashes as it did.
    with world.platform.store.session() as session:
        rows = session.scalars(
            select(PromptVersion)
            .join(Prompt, Prompt.id == PromptVersion.prompt_id)
            .where(Prompt.project_id == world.project)
            .order_by(PromptVersion.version)
        ).all()
        assert [r.content_hash == rows[0].content_hash for r in rows] == [True, False]


def test_labels_move_and_bump_the_generation(world: World) -> None:
    world.push(labels=["staging"])
    world.push(params={"temperature": 0.7})
    start = world.generation()

    view = world.service.set_label(world.project, "support", "production", 1, actor="ann")
    assert (view.version, view.labels) == (1, ["production", "staging"])
    assert world.generation() == start + 1
    assert world.service.get(world.project, "support", label="production").version == 1
    world.service.set_label(world.project, "support", "production", 1, actor="ann")
    assert world.generation() == start + 1  # pointing it where it points changes nothing

    world.service.set_label(world.project, "support", "production", 2, actor="bob")
    assert world.generation() == start + 2
    assert world.service.get(world.project, "support", label="production").version == 2
    assert world.service.list(world.project)[0].labels == {"production": 2, "staging": 1}

    assert world.service.remove_label(world.project, "support", "staging", actor="ann") == 1
    assert world.generation() == start + 3
    with pytest.raises(NotFound) as caught:
        world.service.get(world.project, "support", label="staging")
    assert caught.value.message == "no label 'staging' on prompt 'support'; labels: production"
    assert caught.value.param == "label"

    with pytest.raises(NotFound, match=r"no version 9 of prompt 'support'; versions: 1 to 2"):
        world.service.set_label(world.project, "support", "production", 9, actor="ann")
    with pytest.raises(UserError, match="reserved"):
        world.service.set_label(world.project, "support", "latest", 1, actor="ann")
    with pytest.raises(UserError, match="would read as a version"):
        world.service.set_label(world.project, "support", "3", 1, actor="ann")
    with pytest.raises(UserError, match="not both"):
        world.service.get(world.project, "support", version=1, label="production")
    with pytest.raises(NotFound, match=r"no prompt 'nope' in this project; prompts: support"):
        world.service.get(world.project, "nope")
    # Another project sees none of it, and its generation did not move.
    with pytest.raises(NotFound, match="prompts: none yet"):
        world.service.get(world.other, "support")
    assert world.generation(world.other) == 0


def test_diff_names_the_changed_lines(world: World) -> None:
    world.push(labels=["production"])
    world.push(
        params={"temperature": 0.7, "max_tokens": 200},
        messages=[{"role": "user", "content": "{{ question }}?"}],
    )
    text = world.service.diff(world.project, "support", "production", 2)
    assert text.startswith("--- support@production (version 1)\n+++ support@2\n")
    changed = [line for line in text.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert changed == [
        "-  temperature: 0.2",
        "+  temperature: 0.7",
        "-- role: system",
        "-  content: |-",
        "-    You answer for {{ company }}.",
        "-    Be brief.",
        "-  content: '{{ question }}'",
        "+  content: '{{ question }}?'",
    ]
    assert world.service.diff(world.project, "support", "latest", "2") == ""
    with pytest.raises(NotFound, match="no label 'prod'"):
        world.service.diff(world.project, "support", "prod", 2)


def test_export_reads_back_to_the_same_prompts(world: World) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    world.push(labels=["production", "staging"], output_schema=schema)
    world.push(name="greeter", messages=[{"role": "user", "content": "Say hi to {{ who }}"}], model=None)
    exported = world.service.export(world.project)
    assert exported.startswith("- name: greeter\n")  # a list of prompts, by name
    assert "\n- name: support\n" in exported

    for spec in load_specs(exported, "export.yaml"):  # into another project, as from a git checkout
        world.service.push(world.other, spec, author="ci", author_key_id=None)
    assert world.service.export(world.other) == exported
    imported = world.service.get(world.other, "support", label="production")
    assert (imported.version, imported.output_schema, imported.labels) == (
        1,
        schema,
        ["production", "staging"],
    )
    single = world.service.export(world.project, "support")
    assert single.startswith("name: support\ndescription: Answers support questions\nmodel: small\n")
    # Pushing the export back where it came from is a no-op.
    assert world.push(**load_specs(single)[0].model_dump())[1] is False


def test_delete_and_unlabel_are_refused_while_an_endpoint_serves_the_prompt(world: World) -> None:
    world.push(labels=["production", "staging"])
    with world.platform.store.write() as session:
        endpoint = Endpoint(
            project_id=world.project,
            name="support-bot",
            config={"prompt": "support", "label": "production", "variants": []},
        )
        session.add(endpoint)
    with pytest.raises(Conflict, match="prompt 'support' is used by endpoint support-bot"):
        world.service.delete(world.project, "support")
    with pytest.raises(Conflict, match="endpoint support-bot serves label 'production'"):
        world.service.remove_label(world.project, "support", "production", actor="ann")
    world.service.remove_label(world.project, "support", "staging", actor="ann")  # not served

    with world.platform.store.write() as session:
        session.delete(session.get(Endpoint, endpoint.id))
    before = world.generation()
    assert world.service.delete(world.project, "support").latest_version == 1
    assert world.generation() == before + 1
    assert world.service.list(world.project) == []
    again, created = world.push()  # the name is free again, numbering starts over
    assert (again.version, created, again.labels) == (1, True, [])


def test_concurrent_pushes_number_versions_in_turn(world: World) -> None:
    def push(i: int) -> int:
        view, created = world.push(params={"seed": i})
        assert created
        return int(view.version)

    with ThreadPoolExecutor(6) as pool:
        numbers = list(pool.map(push, range(6)))
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
    assert world.service.list(world.project)[0].latest_version == 6


BAD_SPECS: list[tuple[dict[str, Any], str, str]] = [
    ({"messages": [{"role": "user", "content": "Hi\n{{ name }"}]}, "messages[0].content", "line 2, column 1"),
    ({"messages": [{"role": "user", "content": "{% for x in y %}"}]}, "messages[0].content", "line 1"),
    ({"output_schema": {"type": "objekt"}}, "output_schema", "not a valid JSON Schema"),
    ({"output_schema": {"$ref": "https://example.com/s.json"}}, "output_schema", "only references inside"),
    ({"params": {"temprature": 1}}, "params.temprature", "not an OpenAI chat parameter"),
    ({"params": {"temperature": 7}}, "params.temperature", "less than or equal to 2"),
    ({"params": {"stream": True}}, "params.stream", "not an OpenAI chat parameter"),
    ({"model": "gpt-9"}, "model", "model 'gpt-9' does not exist"),
]


def test_bad_specs_are_refused_naming_the_field(world: World) -> None:
    for changes, param, fragment in BAD_SPECS:
        with pytest.raises(UserError) as caught:
            world.push(**changes)
        assert caught.value.status_code == 400, changes
        assert caught.value.param == param, changes
        assert fragment in caught.value.message, (changes, caught.value.message)
    with pytest.raises(TemplateError) as error:
        world.push(messages=[{"role": "system", "content": "ok"}, {"role": "user", "content": "{{ a b }}"}])
    assert (error.value.line, error.value.column) == (1, 1)
    assert world.service.list(world.project) == []  # nothing half-saved


@pytest.mark.parametrize(
    ("document", "param", "fragment"),
    [
        ({**SUPPORT, "name": "Support Bot"}, "name", "should match pattern"),
        ({**SUPPORT, "labels": ["latest"]}, "labels", "'latest' is reserved"),
        ({**SUPPORT, "labels": ["a", "a"]}, "labels", "listed twice"),
        ({**SUPPORT, "messages": []}, "messages", "at least 1 item"),
        ({**SUPPORT, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role", "Input should be"),
        ({**SUPPORT, "temperature": 1}, "temperature", "Extra inputs are not permitted"),
        (["not", "a", "mapping"], "prompt.yaml", "must be a mapping"),
    ],
)
def test_bad_spec_shapes_name_the_field(document: Any, param: str, fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        spec_from(document, "prompt.yaml")
    assert (caught.value.param, caught.value.status_code) == (param, 400)
    assert fragment in caught.value.message
    assert caught.value.message.startswith("prompt.yaml: ")


def test_prompt_files_refuse_yaml_aliases_and_name_syntax_errors() -> None:
    with pytest.raises(
        UserError, match=r"not valid YAML at line 3, column 1: found character '\\t'"
    ) as caught:
        load_specs("name: support\nmessages:\n\t- role: user\n", "support.yaml")
    assert caught.value.param == "support.yaml"
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(UserError, match=r"aliases \(\*a\) are not accepted"):
        load_specs(bomb)
    with pytest.raises(UserError, match="holds no prompt"):
        load_specs("# only a comment\n")
