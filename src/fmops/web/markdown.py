"""Markdown to safe HTML: the only HTML the web UI inserts unescaped (model answers, messages).

Safe by construction, not by filtering: HTML in the text is not parsed (`html=False`, so it comes
out as text), links are kept only for http, https and mailto and open with
`rel="nofollow noopener noreferrer"`, and images are not rendered at all (a model's `![](url)`
would otherwise make every reader's browser fetch a URL of its choice). Code blocks are
highlighted by Pygments into `<span class=...>` with escaped text; `static/pygments.css` colours them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

MAX_CHARS = 200_000  # longer text is cut: rendering stays fast whatever a model wrote
MAX_HIGHLIGHT_CHARS = 20_000  # a longer code block is shown plain
ALLOWED_SCHEMES = ("http://", "https://", "mailto:")
LINK_REL = "nofollow noopener noreferrer"
CSS_SCOPE = ".md pre code"  # where pygments.css applies (the chat wraps rendered text in .md)

_FORMATTER = HtmlFormatter(nowrap=True)


def _valid_link(url: str) -> bool:
    return url.strip().lower().startswith(ALLOWED_SCHEMES)


def _highlight(code: str, lang: str, _attrs: str) -> str:
    """Highlighted HTML for a fenced block, or "" to let markdown-it escape it as plain text."""
    if not lang or len(code) > MAX_HIGHLIGHT_CHARS:
        return ""
    try:
        lexer = get_lexer_by_name(lang.split()[0], stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    return str(highlight(code, lexer, _FORMATTER))


def _link_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    tokens[idx].attrSet("rel", LINK_REL)
    tokens[idx].attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    md.disable("image")
    md.validateLink = _valid_link  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    return md


_MD = _parser()


def render_markdown(text: str) -> Markup:
    """Markdown as HTML that is safe to insert into a page as is."""
    return Markup(_MD.render(text[:MAX_CHARS]))  # noqa: S704 - escaped by markdown-it (html=False)


def pygments_css(style: str = "default") -> str:
    """The stylesheet for highlighted code (static/pygments.css is this, generated once)."""
    defs: Any = HtmlFormatter(style=style).get_style_defs(CSS_SCOPE)
    # Only the rules under the scope: the others (line numbers, a global `pre`) are not used here.
    return "\n".join(line for line in str(defs).splitlines() if line.startswith(CSS_SCOPE))
