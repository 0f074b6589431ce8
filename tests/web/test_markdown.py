"""Markdown to safe HTML: what renders, and every way text could smuggle markup or script through."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from fmops.web.markdown import LINK_REL, MAX_CHARS, pygments_css, render_markdown
from fmops.web.templating import STATIC

PAYLOAD = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><svg onload=alert(3)>"
# The only elements and attributes rendered Markdown may contain.
ALLOWED_TAGS = {
    "p", "br", "em", "strong", "del", "s", "code", "pre", "span", "a", "ul", "ol", "li", "blockquote",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRS = {"href", "rel", "target", "class", "start", "style"}


class _Elements(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


def assert_inert(html: str) -> None:
    """No element or attribute outside the allow-list; links only to http(s)/mailto; no handlers."""
    for tag, attrs in elements(html):
        assert tag in ALLOWED_TAGS, (tag, html)
        assert set(attrs) <= ALLOWED_ATTRS, (tag, attrs, html)
        if tag == "a":
            assert (attrs["href"] or "").lower().startswith(("http://", "https://", "mailto:")), html
            assert attrs["rel"] == LINK_REL
        if "style" in attrs:  # table alignment only
            assert re.fullmatch(r"text-align:(left|right|center)", attrs["style"] or ""), html


def test_markdown_renders_what_a_chat_answer_uses() -> None:
    html = render_markdown(
        "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `code`.\nA second line.\n\n"
        "- one\n- two\n\n1. first\n\n> quoted\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n"
        "[docs](https://example.com/x?a=1&b=2)\n"
    )
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<em>italic</em>" in html
    assert "<s>gone</s>" in html or "<del>gone</del>" in html
    assert "<code>code</code>" in html
    assert "<br />" in html  # single newlines break lines, as people expect in a chat
    assert "<li>one</li>" in html
    assert "<blockquote>" in html
    assert "<table>" in html
    assert '<td style="text-align:right">2</td>' in html
    assert f'<a href="https://example.com/x?a=1&amp;b=2" rel="{LINK_REL}" target="_blank">docs</a>' in html
    assert_inert(html)


def test_code_blocks_are_highlighted_with_classes_and_stay_escaped() -> None:
    html = render_markdown('```python\ndef f(x):\n    return "<b>" + x  # hi\n```\n')
    assert html.startswith('<pre><code class="language-python">')
    assert '<span class="k">def</span>' in html
    assert '<span class="c1"># hi</span>' in html
    assert "&lt;b&gt;" in html
    assert "<b>" not in html
    assert_inert(html)


@pytest.mark.parametrize(
    "fence",
    ["```\n", "```nosuchlanguage\n", '```"><script>alert(1)</script>\n', "```python onload=alert(1)\n"],
)
def test_unknown_or_hostile_code_languages_render_plain_and_escaped(fence: str) -> None:
    html = render_markdown(f"{fence}<script>alert(1)</script>\n```\n")
    assert "<script" not in html
    assert "onload" not in html.split(">")[1]  # the info string's extra words are no attributes
    assert_inert(html)
    if "python" not in fence:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_huge_code_block_is_shown_plain() -> None:
    html = render_markdown("```python\n" + "x = 1\n" * 10_000 + "```\n")
    assert "<span" not in html
    assert html.count("x = 1") == 10_000


@pytest.mark.parametrize(
    "text",
    [
        PAYLOAD,
        "<script>alert(1)</script>",
        "<div onclick=alert(1)>click</div>",
        "<iframe src=javascript:alert(1)></iframe>",
        "<a href=javascript:alert(1)>x</a>",
        "<style>body{display:none}</style>",
        "<!-- comment --><b>bold</b>",
        "text <span style='x'>inline</span> html",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x]( javascript:alert(1) )",
        "[x](java\tscript:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](javascript&#58;alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](file:///etc/passwd)",
        "[x](//evil.example/path)",
        "[x](/logout)",
        "<javascript:alert(1)>",
        "<data:text/html,<script>alert(1)</script>>",
        "[ref]\n\n[ref]: javascript:alert(1)",
        '[x](https://ok.example "title" onmouseover=alert(1))',
        '[x](https://ok.example"onmouseover="alert(1))',
        "![img](https://evil.example/track.png)",
        "![x](x onerror=alert(1))",
        '![x](javascript:alert(1) "t")',
        "*<img src=x onerror=alert(1)>*",
        "`<script>alert(1)</script>`",
        "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
        "> <svg onload=alert(3)>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "\x00<script>alert(1)</script>",
    ],
)
def test_nothing_in_the_text_becomes_markup_or_script(text: str) -> None:
    html = render_markdown(text)
    assert_inert(html)
    for _, attrs in elements(html):
        for value in attrs.values():
            assert not re.search(r"(java|vb)script:|data:|onerror|onload", value or "", re.I), html


def test_the_payload_reads_as_text() -> None:
    html = render_markdown(PAYLOAD)
    assert elements(html) == [("p", {})]
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_images_become_links_never_fetched() -> None:
    html = render_markdown("![a chart](https://example.com/chart.png)")
    assert "<img" not in html
    assert f'<a href="https://example.com/chart.png" rel="{LINK_REL}" target="_blank">a chart</a>' in html


def test_very_long_text_is_cut() -> None:
    html = render_markdown("word " * (MAX_CHARS // 2))
    assert html.count("word") == MAX_CHARS // 5


def test_the_static_stylesheet_is_the_generated_one() -> None:
    shipped = (STATIC / "pygments.css").read_text()
    assert pygments_css() in shipped
    assert all(line.startswith((".md pre code", "/*")) for line in shipped.splitlines() if line.strip())
