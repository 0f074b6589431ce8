"""Templates render in a sandbox: neither a template nor a variable reaches Python internals (each
escape is refused with a 400), a variable's value is text (never a template), missing variables are
named, and a render cannot exhaust the server."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from jinja2 import Environment

from fmops.prompts.schemas import PromptVersionView
from fmops.prompts.templates import TemplateError, compile_template, render_messages


def view(*contents: str) -> PromptVersionView:
    messages = [{"role": "user", "content": c} for c in contents]
    return PromptVersionView(
        name="t",
        version=1,
        messages=messages,
        variables=[],
        model=None,
        params={},
        output_schema=None,
        message=None,
        author=None,
        created_at=datetime.now(UTC),
    )


ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__['__builtins__']['__import__']('os') }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ x.__class__.__base__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ request.application.__globals__ }}",
    "{{ config.items() }}",
    "{% set d = {} %}{{ d.update({'a': 1}) }}",  # the immutable sandbox: no mutation either
    "{{ [].append(1) }}",
    "{{ '{x.__class__}'.format_map({'x': x}) }}",
    "{{ '{0.__class__}'.format(x) }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_escapes_are_refused(template: str) -> None:
    with pytest.raises(TemplateError) as caught:
        view(template).render({"x": "text"})
    assert caught.value.status_code == 400
    # Refused for what it tried (or for naming something that is not a variable), never run.
    assert "may not do" in caught.value.message or caught.value.code == "missing_variables"


def test_variable_values_are_text_never_templates() -> None:
    [message] = view("Q: {{ question }}").render(
        {"question": "{{ 7*7 }} {% for x in y %} {{ ''.__class__ }}"}
    )
    assert message["content"] == "Q: {{ 7*7 }} {% for x in y %} {{ ''.__class__ }}"
    [nested] = view("{{ user.name }} / {{ user['tier'] }}").render({"user": {"name": "{{ 1+1 }}", "tier": 2}})
    assert nested["content"] == "{{ 1+1 }} / 2"


def test_missing_variables_are_named_all_at_once() -> None:
    with pytest.raises(TemplateError) as caught:
        view("{{ company }} {{ tone }}", "{{ question }}").render({"company": "Acme"})
    assert (caught.value.status_code, caught.value.code, caught.value.param) == (
        400,
        "missing_variables",
        "variables",
    )
    assert caught.value.missing == ["question", "tone"]
    assert caught.value.message == "missing variables: question, tone"


def test_a_syntax_error_names_line_and_column() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template("Hello\nYou are {{ role }}.\nAsk {{ question ", "messages[1].content")
    assert (caught.value.line, caught.value.column) == (3, 5)
    assert caught.value.message.startswith("messages[1].content does not parse at line 3, column 5")


DOUBLE = "{% set a = a ~ a %}" * 12
NESTED = "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}"
BOMBS: list[tuple[str, str]] = [
    # template, what the refusal says
    ("{{ range(10**9) | list }}", "range() is limited"),
    ("{{ 'x' * 10**9 }}", "repeat a value"),
    ("{{ ((9 ** 64) ** 64) ** 64 ** 64 }}", "integers above"),
    ("{% for i in range(10000) %}{{ s }}{% endfor %}", "renders to more than"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "that much work"),
    (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "that much work",
    ),
    ("{% set a = s * 100 %}" + DOUBLE + "{{ a|length }}", "text of more than"),
    ("{% set a = s * 100 %}" + DOUBLE.replace("~", "+") + "{{ a|length }}", "text of more than"),
    (NESTED + "{{ ns.a }}", "values of more than"),
    (NESTED.replace("[ns.a, ns.a]", "[ns.a] * 2") + "{{ ns.a|length }}", "values of more than"),
    ("{{ {}.fromkeys(range(10000), s) }}", "values of more than"),
    ("{{ 'x'|center(2000000000) }}", "text of more than"),
    ("{{ 'x'.ljust(2000000000) }}", "text of more than"),
    ("{{ 'x'|indent(2000000000, true) }}", "text of more than"),
    ("{{ (s * 100)|replace('x', s * 100) }}", "text of more than"),
    ("{{ range(10000)|join(s * 100) }}", "text of more than"),
    ("{{ '%2000000000d'|format(1) }}", "format width"),
    ("{{ '%2000000000d' % 1 }}", "format width"),
    ("{{ '{:>2000000000}'.format(1) }}", "format width"),
    ("{{ '{:>{w}}'.format(1, w=2000000000) }}", "format width"),
    ("{{ lipsum(100000) }}", "lipsum may make"),
    ("{{ [1]|batch(2000000000, 0)|list }}", "at most 10000 items"),
]


@pytest.mark.parametrize(("template", "says"), BOMBS)
def test_a_render_is_bounded(template: str, says: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        render_messages([{"role": "user", "content": template}], {"s": "x" * 1000})
    assert says in caught.value.message
    assert caught.value.status_code == 400
    assert time.monotonic() - started < 10  # unbounded, each took minutes or all the memory


ORDINARY = [
    (
        "{% for d in docs %}[{{ loop.index }}/{{ loop.length }}] {{ d.title }}"
        "{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}",
        "[1/2] a, [2/2] b",
    ),
    ("{% for k, v in meta|dictsort %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;"),
    ("{% for a, b in pairs %}{{ a ~ '-' ~ b }} {% endfor %}", "1-2 3-4 "),
    ("{% for x in tree recursive %}{{ x.n }}{% if x.c %}({{ loop(x.c) }}){% endif %}{% endfor %}", "1(2)"),
    (
        "{{ [name, 'b']|join(', ') }} {{ {'k': name}|tojson }} {{ docs|map(attribute='title')|join }}",
        'ann, b {"k": "ann"} ab',
    ),
    (
        "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
        "10",
    ),
    ("{{ '%-4s|' % name }}{{ '{:>5}'.format(name) }}|{{ name|center(7) }}|", "ann |  ann|  ann  |"),
    (
        "{% macro hi(n) %}Hi {{ n }}{% endmacro %}{{ hi(name) }} {{ dict(a=1).a }} {{ 2 ** 10 }}",
        "Hi ann 1 1024",
    ),
    (
        "{{ [1, 2, 3]|batch(2, '-')|list }} {{ 'ab' * 2 }} {{ [name] * 2 }}",
        "[[1, 2], [3, '-']] abab ['ann', 'ann']",
    ),
]


@pytest.mark.parametrize(("template", "expected"), ORDINARY)
def test_ordinary_templates_render_as_jinja_does(template: str, expected: str) -> None:
    values = {
        "docs": [{"title": "a"}, {"title": "b"}],
        "meta": {"b": 2, "a": 1},
        "pairs": [[1, 2], [3, 4]],
        "tree": [{"n": 1, "c": [{"n": 2, "c": []}]}],
        "name": "ann",
    }
    [message] = render_messages([{"role": "user", "content": template}], values)
    assert message["content"] == expected


SUBSTITUTIONS = [
    "Be brief.\n",
    "ends }} and %} and #} here",
    "line one\r\nline two\r\n",
    "",
    "\n\n",
    "You answer for {{ company }}.\r\nBe brief.\n",
    "{{question}}{{ question }} {{- company -}} !",
    "{{ n }} and {{ items }}",  # not text: Jinja prints them
    "{{ company }}{# a note #}{% raw %}{{ x }}{% endraw %}",
]


@pytest.mark.parametrize("text", SUBSTITUTIONS)
def test_plain_substitutions_render_as_jinja_does(text: str) -> None:
    # Text and `{{ name }}` with text values skip Jinja (fmops.prompts.templates.substitute); a plain
    # Jinja environment with the same settings is the reference.
    values = {"company": "Acme {{ x }}", "question": "When?\r\n", "n": 3, "items": ["a", None]}
    expected = Environment(keep_trailing_newline=True, autoescape=False).from_string(text).render(values)
    [message] = render_messages([{"role": "user", "content": text}], values)
    assert message["content"] == expected


def test_a_substituted_render_is_bounded_too() -> None:
    with pytest.raises(TemplateError) as caught:
        render_messages([{"role": "user", "content": "{{ a }}{{ a }}"}], {"a": "x" * 600_000})
    assert caught.value.code == "template_too_large"
