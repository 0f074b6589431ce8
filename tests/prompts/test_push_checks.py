"""A template that reaches for Python's internals is refused when it is pushed, with line and column,
so no version that could try it is ever stored; data that merely starts with `_` stays usable."""

from __future__ import annotations

import pytest

from fmops.catalog import ModelSpec
from fmops.errors import NotFound
from fmops.platform import Platform
from fmops.prompts.schemas import PromptSpec
from fmops.prompts.service import PromptService
from fmops.prompts.templates import TemplateError, compile_template, render

REFUSED = [
    # (template, line, column, what the message names)
    ("{{ ''.__class__.__mro__ }}", 1, 6, "`__class__` is part of Python's internals"),
    ("Hello {{ name }}\n{{ cycler.__init__.__globals__ }}", 2, 10, "`__init__`"),
    ("{{ x['__globals__'] }}", 1, 7, "`__globals__`"),
    ("{% if x %}\n  {{ x|attr('__class__') }}\n{% endif %}", 2, 14, "attr('__class__')"),
    ("{{ self._TemplateReference__context }}", 1, 8, "private to Jinja"),
    ("{% set d = {} %}{{ d.update({'a': 1}) }}", 1, 21, "`update()` would change a value"),
    ("{{ [].append(1) }}", 1, 6, "`append()`"),
    ("{{ '{0.__class__}'.format(x) }}", 1, 5, "a format field"),
    ("{{ '{x.__class__}'.format_map({'x': x}) }}", 1, 5, "a format field"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", 1, 10, "`__globals__`"),
]


@pytest.mark.parametrize(("template", "line", "column", "named"), REFUSED)
def test_internals_are_refused_with_line_and_column(
    template: str, line: int, column: int, named: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(template, "messages[0].content")
    error = caught.value
    assert (error.status_code, error.param, error.line, error.column) == (
        400,
        "messages[0].content",
        line,
        column,
    )
    assert error.message.startswith(f"messages[0].content at line {line}, column {column}: ")
    assert named in error.message


def test_data_that_starts_with_an_underscore_is_still_data() -> None:
    template = "{{ doc._id }} {{ doc['_id'] }} {{ items|join(', ') }} {{ '{0}'.format(n) }}"
    assert render(template, {"doc": {"_id": "a1"}, "items": ["x", "y"], "n": 3}) == "a1 a1 x, y 3"


def test_a_refused_template_never_becomes_a_version(platform: Platform) -> None:
    project = platform.auth.create_project("push-checks").id
    platform.catalog.add(project, ModelSpec(alias="small", provider="openai", model="m"), trusted=True)
    service = PromptService(platform.store, platform.catalog)
    spec = PromptSpec.model_validate(
        {
            "name": "escape",
            "model": "small",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Q: {{ question }}\n{{ ''.__class__.__mro__ }}"},
            ],
        }
    )
    with pytest.raises(TemplateError) as caught:
        service.push(project, spec, author="ann", author_key_id=None)
    assert caught.value.message.startswith("messages[1].content at line 2, column 6: ")
    with pytest.raises(NotFound):
        service.get(project, "escape")
