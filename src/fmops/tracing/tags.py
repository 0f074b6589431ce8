"""Tags on spans, as Langfuse users know them: short labels a caller puts on a call (`env:prod`,
`team-a`, `eval-candidate`) to find it again, filter the trace explorer by, or build a dataset from.

Where they come from: the OpenAI body's `metadata.tags` (OpenAI's metadata values are strings, so
a comma-separated list), the `X-Fmops-Tags` header of /v1/chat/completions and /v1/embeddings (a
comma-separated list too, joining the body's), OTLP span attributes `fmops.tags` or
`langfuse.trace.tags` (a string array, or a comma-separated string). They are stored as rows of
`span_tags` (migration 0014), in the span's own transaction (fmops.tracing.writer), and filtered
on as `TraceFilters.tags`.

A tag is 1 to 64 characters: letters, digits and `_ . : / = + @ -`, starting with a letter, digit or
`_`. Case is kept and matters, as in Langfuse. A span holds at most `MAX_TAGS` distinct tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fmops.errors import UserError

MAX_TAG_LENGTH = 64
MAX_TAGS = 20  # on one span
MAX_FILTER_TAGS = 10  # in one filter (all must match)
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/=+@-]{0,63}$"  # for JSON schemas
_TAG = re.compile(TAG_PATTERN[1:-1])
RULE = "1 to 64 letters, digits or _ . : / = + @ - (starting with a letter, digit or _)"
TAGS_HEADER = "X-Fmops-Tags"  # tags of a gateway call, as a header (its error messages name it)
# The header's grammar, published in the OpenAPI document: up to MAX_TAGS comma-separated items,
# each a tag or blank, with spaces or tabs around them.
_ITEM = rf"[ \t]*({TAG_PATTERN[1:-1]})?[ \t]*"
TAGS_HEADER_PATTERN = rf"^{_ITEM}(,{_ITEM}){{0,{MAX_TAGS - 1}}}$"
TAGS_HEADER_MAX_LENGTH = MAX_TAGS * (MAX_TAG_LENGTH + 3)
_TAGS_HEADER = re.compile(TAGS_HEADER_PATTERN)


def check_tag(tag: str, *, param: str = "tags") -> str:
    """`tag` if valid, else a UserError (400) that says what a tag may hold."""
    if not isinstance(tag, str) or _TAG.fullmatch(tag) is None:
        shown = repr(tag[:80]) if isinstance(tag, str) else type(tag).__name__
        raise UserError(f"{param}: {shown} is not a valid tag: use {RULE}", param=param)
    return tag


def parse_tags(value: str | Iterable[str], *, param: str = "tags", limit: int = MAX_TAGS) -> tuple[str, ...]:
    """Distinct tags, in the order given, from a comma-separated string or a list of strings.

    Blank items (`a,,b`, a trailing comma) are ignored; anything else invalid is refused.
    """
    items = value.split(",") if isinstance(value, str) else value
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise UserError(f"{param}: tags are strings, not {type(item).__name__}", param=param)
        tag = item.strip()
        if tag:
            seen[check_tag(tag, param=param)] = None
    if len(seen) > limit:
        raise UserError(f"{param}: at most {limit} tags, not {len(seen)}", param=param)
    return tuple(seen)


def merge_tags(first: tuple[str, ...], second: tuple[str, ...], *, param: str) -> tuple[str, ...]:
    """`first`, then those of `second` not in it (both already checked); at most `MAX_TAGS` in all."""
    merged = tuple(dict.fromkeys((*first, *second)))
    if len(merged) > MAX_TAGS:
        raise UserError(
            f"{param}: at most {MAX_TAGS} tags with metadata.tags, not {len(merged)}", param=param
        )
    return merged


def parse_tags_header(value: str) -> tuple[str, ...]:
    """The tags of an X-Fmops-Tags header: checked as `metadata.tags` is, and against the header's
    published grammar (`TAGS_HEADER_PATTERN`); a 400 names the header."""
    tags = parse_tags(value, param=TAGS_HEADER)  # its messages name the bad tag
    if len(value) > TAGS_HEADER_MAX_LENGTH or _TAGS_HEADER.fullmatch(value) is None:
        raise UserError(
            f"{TAGS_HEADER}: use at most {MAX_TAGS} tags, comma-separated (e.g. env:prod,team-a)",
            param=TAGS_HEADER,
        )
    return tags
