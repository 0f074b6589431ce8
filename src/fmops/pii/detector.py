"""Find personal data and secrets in text: `detect(text) -> [Finding(type, start, end)]`.

Each type has a candidate pattern (fmops.pii.patterns) and a check that a candidate must pass: the Luhn
sum and an issuer prefix for cards, mod 97 for IBANs, a digit count and no "order #"-style context for
phone numbers, an address parser for IPs, entropy and character classes for unlabelled tokens. Where
two findings overlap, the more specific type wins (a card number is not also a phone number).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum

import regex

from fmops.pii import patterns as p
from fmops.pii.checks import (
    IBAN_LENGTHS,
    card_issuer_known,
    entropy,
    es_dni_valid,
    iban_valid,
    in_aadhaar_valid,
    luhn_valid,
    nl_bsn_valid,
    uk_nino_valid,
    us_ssn_valid,
)


class PiiType(StrEnum):
    secret = "secret"
    credit_card = "credit_card"
    iban = "iban"
    national_id = "national_id"
    email = "email"
    ip_address = "ip_address"
    phone = "phone"
    address = "address"


STRUCTURED = frozenset(
    {
        PiiType.email,
        PiiType.phone,
        PiiType.credit_card,
        PiiType.iban,
        PiiType.national_id,
        PiiType.ip_address,
        PiiType.secret,
    }
)
_PRIORITY = {t: i for i, t in enumerate(PiiType)}  # declaration order: the first wins an overlap


@dataclass(frozen=True, slots=True)
class Finding:
    type: PiiType
    start: int
    end: int
    detail: str = ""  # which rule matched (e.g. "aws_access_key"), never the matched text


Scan = Callable[[str], Iterator[Finding]]


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _after_id_word(text: str, start: int) -> bool:
    return p.ID_CONTEXT.search(text, max(0, start - 40), start) is not None


def _national_id_word(text: str, start: int) -> regex.Match[str] | None:
    """The word naming a national ID right before `start` ("SSN:", "my BSN is"), if any."""
    return p.NATIONAL_ID_CONTEXT.search(text, max(0, start - 40), start)


# --- pre-filters: each says when a pattern cannot match, so that its scan (tens of microseconds on a
# 2 KB message, the regex engine trying every position) is skipped. Each is a necessary condition
# read off the pattern it guards, never a heuristic: a text that passes is scanned exactly as before.

# An ASCII text's shape: digits 0, upper-case letters A, lower-case a, white space a space, the
# separators number patterns allow (and the comma) kept, the rest x. Every white space character
# being a space only makes the tests below pass more often: they stay necessary conditions.
_SHAPE = str.maketrans(
    {i: "0" if c.isdigit() else " " if c.isspace() else c if c in ".-()+," else "A" if c.isupper()
     else "a" if c.isalpha() else "x" for i, c in enumerate(map(chr, range(128)))}
)  # fmt: skip
# Phones: every separator alike; cards: only a space or a dash between digits.
_PHONE_SEPS = str.maketrans({c: "-" for c in " .()+"})
_CARD_SEPS = str.maketrans({" ": "-", ".": "x", "(": "x", ")": "x", "+": "x"})
_NO_DASH = str.maketrans("", "", "-")  # deleting by translate: twice as fast as replace here


@functools.lru_cache(maxsize=4)
def _shape(text: str) -> str | None:
    """`text`'s shape (see _SHAPE), or None where it is not ASCII (a Unicode digit or separator would
    not map: no pre-filter applies). Cached: the scans of one `detect` call share it."""
    return text.translate(_SHAPE) if text.isascii() else None


def _has_digit(text: str) -> bool:
    if text.isascii():  # O(1): CPython knows; ten substring searches beat a regex scan
        return any(d in text for d in "0123456789")
    return _ANY_DIGIT.search(text) is not None


def _joined_run(shape: str, gap: str, run: int) -> bool:
    """Whether `shape` (separators already mapped to "-") holds `run` digits in a row once separator
    gaps shorter than `gap` are closed up: a longer gap is broken with x before the rest are removed."""
    return "0" * run in shape.replace(gap, "x" * len(gap)).translate(_NO_DASH)


@functools.lru_cache(maxsize=4)
def _phone_run(text: str) -> bool:
    """Whether a phone's digits may be in `text`: digit groups with at most two separators between
    them ("(555) 123", "44 (20)"), 8 digits or more after a "+", 9 or more otherwise. Cached: the card
    scan asks first (a card's digits are such a run too), then the phone scan."""
    shape = _shape(text)
    return shape is None or _joined_run(shape.translate(_PHONE_SEPS), "---", 8 if "+" in text else 9)


def _national_ids(text: str) -> Iterator[Finding]:
    """US SSN, UK NINO, Spanish DNI/NIE and Indian Aadhaar in their printed shapes; a bare run of 9 or 12
    digits (or a dotted BSN) only right after a word naming it, then the same checks."""
    if _has_digit(text):
        shape = _shape(text)
        # An SSN, an Aadhaar and a bare run (9 or 12 digits, a dotted BSN) are each a phone's run too.
        digit_run = _phone_run(text)
        if digit_run and (shape is None or "000-00-0000" in shape or "000 00 0000" in shape):
            for m in p.US_SSN.finditer(text):
                if us_ssn_valid(_digits(m.group())) and not _after_id_word(text, m.start()):
                    yield Finding(PiiType.national_id, m.start(), m.end(), "us_ssn")
        if digit_run and (shape is None or "0000 0000 0000" in shape or "0000-0000-0000" in shape):
            for m in p.IN_AADHAAR.finditer(text):
                if in_aadhaar_valid(_digits(m.group())) and not _after_id_word(text, m.start()):
                    yield Finding(PiiType.national_id, m.start(), m.end(), "in_aadhaar")
        if shape is None or "0000000" in shape:
            for m in p.ES_DNI.finditer(text):
                compact = m.group().replace("-", "").replace(" ", "")
                if es_dni_valid(compact) and not _after_id_word(text, m.start()):
                    yield Finding(PiiType.national_id, m.start(), m.end(), "es_dni")
        if digit_run and (shape is None or "000000000" in shape or "0000.00.000" in shape):
            for m in p.BARE_ID.finditer(text):
                named = _national_id_word(text, m.start())
                digits = _digits(m.group())
                if named is None:
                    continue
                if named.group("ssn") and len(digits) == 9 and "." not in m.group() and us_ssn_valid(digits):
                    yield Finding(PiiType.national_id, m.start(), m.end(), "us_ssn")
                elif named.group("bsn") and len(digits) == 9 and nl_bsn_valid(digits):
                    yield Finding(PiiType.national_id, m.start(), m.end(), "nl_bsn")
                elif named.group("aadhaar") and len(digits) == 12 and in_aadhaar_valid(digits):
                    yield Finding(PiiType.national_id, m.start(), m.end(), "in_aadhaar")
        if shape is None or "AA00" in shape or "AA 00" in shape:  # two capitals, then digits
            for m in p.UK_NINO.finditer(text):
                if uk_nino_valid(m.group().replace(" ", "")):
                    yield Finding(PiiType.national_id, m.start(), m.end(), "uk_nino")


def _emails(text: str) -> Iterator[Finding]:
    if "@" in text:
        for m in p.EMAIL.finditer(text):
            yield Finding(PiiType.email, m.start(), m.end())


def _phones(text: str) -> Iterator[Finding]:
    if not _phone_run(text):
        return
    for m in p.PHONE.finditer(text):
        s = m.group()
        n = len(_digits(s))
        international = s.startswith(("+", "00"))
        # E.164 allows 15 digits; national numbers have 9-12 (a date has 8, so it never counts); "00"
        # and a country code leave at least 7 for the number itself.
        low = 10 if s.startswith("00") else 8 if international else 9
        if not low <= n <= (15 if international else 12) or _after_id_word(text, m.start()):
            continue
        if _national_id_word(text, m.start()):  # an ID, valid or mistyped: not a phone
            continue
        if _IP_LIKE.fullmatch(s) or _IBAN_TAIL.search(text, max(0, m.start() - 40), m.start()):
            continue
        yield Finding(PiiType.phone, m.start(), m.end())


def _cards(text: str) -> Iterator[Finding]:
    # 12 digits or more, a single space or dash at most between two: a phone's run as well.
    shape = _shape(text)
    if shape is not None and not (_phone_run(text) and _joined_run(shape.translate(_CARD_SEPS), "--", 12)):
        return
    for m in p.CARD.finditer(text):
        digits = _digits(m.group())
        if len(set(m.group()) - set("0123456789")) > 1:
            continue  # mixed separators ("4111-1111 1111"): not how a card number is written
        if _IBAN_TAIL.search(text, max(0, m.start() - 40), m.start()):
            continue
        if not (card_issuer_known(digits) and luhn_valid(digits)) or _after_id_word(text, m.start()):
            continue
        if not _national_id_word(text, m.start()):  # "Aadhaar 5738 3450 3316": an ID, not a card
            yield Finding(PiiType.credit_card, m.start(), m.end())


def _ibans(text: str) -> Iterator[Finding]:
    shape = _shape(text)  # a country code (two capitals), then two check digits
    if shape is not None and "AA00" not in shape:
        return
    for m in p.IBAN.finditer(text):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        # The pattern may run into a following code word: keep exactly the country's length.
        end, count = m.start(), 0
        while count < want and end < m.end():
            if text[end] != " ":
                count += 1
            end += 1
        compact = text[m.start() : end].replace(" ", "")
        if count == want and iban_valid(compact):
            yield Finding(PiiType.iban, m.start(), end)


def _ips(text: str) -> Iterator[Finding]:
    if "." in text and _has_digit(text) and ((shape := _shape(text)) is None or "0.0" in shape):
        for m in p.IPV4.finditer(text):
            if not _after_id_word(text, m.start()):
                yield Finding(PiiType.ip_address, m.start(), m.end(), "ipv4")
    # The pattern's look-ahead wants two colons with at most four hex digits between them.
    if ":" in text and ("::" in text or text.count(":") >= 7) and _IPV6_COLONS.search(text):
        for m in p.IPV6.finditer(text):
            s = m.group()
            groups = [g for g in s.split(":") if g]
            if len(groups) < 2 or not any(ch.isdigit() for ch in s):
                continue  # "::1", "dead::beef": not a host anyone could be found by
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                continue
            yield Finding(PiiType.ip_address, m.start(), m.end(), "ipv6")


_SECRET_NAMES = [
    ("sk-", "api_key"),
    ("sk_", "stripe_key"),
    ("rk_", "stripe_key"),
    ("pk_", "stripe_key"),
    ("gh", "github_token"),
    ("github_pat_", "github_token"),
    ("glpat-", "gitlab_token"),
    ("AKIA", "aws_access_key"),
    ("ASIA", "aws_access_key"),
    ("ABIA", "aws_access_key"),
    ("ACCA", "aws_access_key"),
    ("xox", "slack_token"),
    ("AIza", "google_api_key"),
    ("hf_", "huggingface_token"),
    ("npm_", "npm_token"),
    ("SG.", "sendgrid_key"),
    ("eyJ", "jwt"),
]


# A literal every alternative of p.SECRET starts with (case-sensitive, as the pattern is).
_SECRET_PREFIXES = (
    "sk-", "sk_", "rk_", "pk_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "AKIA",
    "ASIA", "ABIA", "ACCA", "xox", "AIza", "hf_", "npm_", "SG.", "eyJ",
)  # fmt: skip
# Runs of the characters keys are made of, for a pre-filter on their length: s where p.SECRET allows
# one (letters, digits, _, - and the dots of a JWT), t where p.TOKEN does (letters, digits, _, - and
# base64's + and /). Anything else (white space, non-ASCII) breaks a run. A vendor key is 15
# characters or more (xox?- and ten), a high-entropy token 32 or more.
_KEY_RUNS = str.maketrans(
    {i: "s" if c.isalnum() or c in "_-." else " " for i, c in enumerate(map(chr, range(128)))}
)
_TOKEN_RUNS = str.maketrans(
    {i: "t" if c.isalnum() or c in "_-+/" else " " for i, c in enumerate(map(chr, range(128)))}
)
# Either set: a text without 15 of these in a row has neither a vendor key nor a token (prose mostly).
_ANY_KEY_RUNS = str.maketrans(
    {i: "s" if c.isalnum() or c in "_-.+/" else " " for i, c in enumerate(map(chr, range(128)))}
)
_LONG_RUN = "t" * 32
# A word every alternative of p.ASSIGNED_SECRET's key holds, case-folded ("api_key", "PassWD").
_ASSIGNED_WORDS = ("key", "secret", "token", "bearer", "passw", "pwd")
# Without a ":" or "=", p.ASSIGNED_SECRET's key must be followed by "is" (after a quote and white space,
# maybe): in an ASCII text's lower case, reversed, that is "si" first, a literal `re` skips to fast.
# Each alternative of the key ends in one of these words.
_KEY_IS_REVERSED = re.compile(r"si\s*[\"']?(?:yek|terces|nekot|reraeb|drowssap|dwssap|dwp)")


def _secret_name(token: str) -> str:
    return next((name for prefix, name in _SECRET_NAMES if token.startswith(prefix)), "token")


def _random_looking(token: str) -> bool:
    """A key without a known prefix: long, mixed case with digits, and close to random."""
    has = (any(c.isupper() for c in token), any(c.islower() for c in token), any(c.isdigit() for c in token))
    return all(has) and entropy(token) >= 4.0


def _secrets(text: str) -> Iterator[Finding]:
    if "-----BEGIN" in text:
        for m in p.PRIVATE_KEY.finditer(text):
            yield Finding(PiiType.secret, m.start(), m.end(), "private_key")
    keys = "s" * 15 in text.translate(_ANY_KEY_RUNS)
    if keys and "s" * 15 in text.translate(_KEY_RUNS) and any(prefix in text for prefix in _SECRET_PREFIXES):
        for m in p.SECRET.finditer(text):
            yield Finding(PiiType.secret, m.start(), m.end(), _secret_name(m.group()))
    if ":" in text or "=" in text or not text.isascii():
        # ASSIGNED_SECRET matches with full case folding: casefold() folds the same way ("PaßWORD").
        folded = text.casefold()
        assigned = any(word in folded for word in _ASSIGNED_WORDS)
    else:
        assigned = _KEY_IS_REVERSED.search(text.lower()[::-1]) is not None
    if assigned:
        for m in p.ASSIGNED_SECRET.finditer(text):
            value = m.group("value")
            if any(not c.isalpha() for c in value) or entropy(value) >= 3.0:
                yield Finding(PiiType.secret, m.start("value"), m.end("value"), "assigned")
    for m in _tokens(text) if keys else ():
        if _random_looking(m.group()):
            yield Finding(PiiType.secret, m.start(), m.end(), "high_entropy")


def _tokens(text: str) -> Iterator[regex.Match[str]]:
    """p.TOKEN's matches. Each lies in a run of 32 token characters or more and starts where the run
    does (its look-behind refuses a token character before it): in ASCII text only those starts are
    tried, instead of a scan of every position."""
    tokens = text.translate(_TOKEN_RUNS)
    at = tokens.find(_LONG_RUN)
    if at == -1:
        return
    if not text.isascii():  # a run may end at a non-ASCII character: scan as the pattern does
        yield from p.TOKEN.finditer(text)
        return
    while at != -1:
        m = p.TOKEN.match(text, at)
        if m is not None:
            yield m
        end = tokens.find(" ", at)
        if end == -1:
            return
        at = tokens.find(_LONG_RUN, end)


# p.ADDRESS's three shapes each hold a number, and a necessary condition for each is read off near
# it, in ASCII text (the non-ASCII words, straße and allée, make a text non-ASCII: scanned as
# before) with digits as 0 and any white space as a space (a superset of p.ADDRESS's \s):
#   "12 Main St": a number, maybe a letter, white space, a capital; then a capitalised whole word
#     after white space must be a street word (`re`'s \s and \w hold at least what p.ADDRESS's do);
#   "12 rue de Rivoli": a number, maybe "bis" or "ter" and a comma, a French street word;
#   "Hauptstrasse 5": a German suffix, white space, a number: found in the text reversed, so that
#     `re` too starts each try at a digit (a pattern led by a literal skips to it fast).
_WORDS = str.maketrans(
    {i: "0" if c.isdigit() else " " if c.isspace() else c for i, c in enumerate(map(chr, range(128)))}
)
_NUMBER_THEN = re.compile(
    r"0(?:[A-Za-z]? +(?P<capital>[A-Z])"
    r"|(?: ?(?:bis|ter))?,? +(?:rue|avenue|boulevard|place|chemin|impasse|quai) )"
)
_NUMBER_AFTER_SUFFIX = re.compile(r"0 +(?:essarts|\.rts|gew|essag|ztalp|eella|gnir|mmad)")  # reversed
_STREET_WORDS = frozenset(
    (
        "Street", "Avenue", "Road", "Boulevard", "Lane", "Drive", "Court", "Way", "Place", "Terrace",
        "Parkway", "Circle", "Square", "Highway", "Close", "Crescent", "Gardens",
        "St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Ter", "Pkwy", "Cir", "Sq", "Hwy",
    )
)  # fmt: skip
_CAPITALISED = re.compile(r"\s([A-Z]\w*)")


def _may_hold_address(text: str) -> bool:
    if not text.isascii():
        return True
    words = text.translate(_WORDS)
    french = {m.group("capital") is None for m in _NUMBER_THEN.finditer(words)}
    if True in french or (False in french and not _STREET_WORDS.isdisjoint(_CAPITALISED.findall(text))):
        return True
    return _NUMBER_AFTER_SUFFIX.search(words[::-1]) is not None


def _addresses(text: str) -> Iterator[Finding]:
    if not _may_hold_address(text):  # the scan is half of detect's time on a 2 KB message
        return
    for m in p.ADDRESS.finditer(text):
        yield Finding(PiiType.address, m.start(), m.end())


SCANS: dict[PiiType, Scan] = {
    PiiType.secret: _secrets,
    PiiType.credit_card: _cards,
    PiiType.iban: _ibans,
    PiiType.national_id: _national_ids,
    PiiType.email: _emails,
    PiiType.ip_address: _ips,
    PiiType.phone: _phones,
    PiiType.address: _addresses,
}
_ANY_DIGIT = regex.compile(r"\d")
_IPV6_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")  # ASCII only: `re` finds it faster
_IP_LIKE = regex.compile(r"\d{1,3}(?:\.\d{1,3}){3}")  # 674.156.87.230: a mistyped address, not a phone
_IBAN_TAIL = regex.compile(r"\b[A-Z]{2}\d{2}(?: [A-Z0-9]{4})+ $")  # the rest of an IBAN (failed mod 97)
_NEED_DIGITS = frozenset({PiiType.credit_card, PiiType.iban, PiiType.phone, PiiType.address})


def parse_types(names: Collection[str] | None) -> frozenset[PiiType]:
    """Every type when `names` is None; ValueError naming the unknown ones and the known ones."""
    if names is None:
        return frozenset(PiiType)
    unknown = sorted(set(names) - {t.value for t in PiiType})
    if unknown:
        raise ValueError(
            f"unknown PII type(s) {', '.join(unknown)}; known: {', '.join(t.value for t in PiiType)}"
        )
    return frozenset(PiiType(n) for n in names)


def detect(text: str, types: Collection[PiiType] | None = None) -> list[Finding]:
    """Findings in text order, none overlapping another (the more specific type wins)."""
    wanted = PiiType if types is None else types
    has_digit = _has_digit(text)
    found: list[Finding] = []
    for kind in PiiType:  # priority order
        if kind not in wanted or (kind in _NEED_DIGITS and not has_digit):
            continue
        found.extend(SCANS[kind](text))
    if len(found) < 2:
        return found
    found.sort(key=lambda f: (_PRIORITY[f.type], f.start - f.end))
    starts: list[int] = []
    kept: list[Finding] = []
    for f in found:
        i = bisect.bisect_right(starts, f.start)
        if (i and kept[i - 1].end > f.start) or (i < len(kept) and kept[i].start < f.end):
            continue
        starts.insert(i, f.start)
        kept.insert(i, f)
    return kept
