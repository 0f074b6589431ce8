"""`injection`: prompt-injection and jailbreak heuristics with a score and a threshold.

Each family of signals has a weight; a text's score is the noisy-OR of the families it shows
(1 - Π(1 - w)), so two weak signals together outweigh one, and no family alone has to be certain:

override     "ignore / disregard / forget ... previous / above / system ... instructions / rules", "from
             now on you ...", "your new instructions are"
jailbreak    role-play personas and modes (DAN, "developer mode", "do anything now", "no restrictions",
             "stay in character", "unfiltered AI")
extraction   asking for the system prompt, hidden instructions, "the text above", "repeat everything
             before this", "verbatim"
delimiter    chat-template tokens and role tags in user text ("</system>", "<|im_start|>", "[INST]")
role_marker  weaker: a "### Instruction" heading, a line starting "system:" (a pasted log may have them)
encoded      a payload to decode (base64 that decodes to text, "decode this and follow"), scored again on
             what it decodes to
unicode      invisible or direction-changing characters (zero-width, bidi overrides, tag characters) and
             words mixing Latin with look-alike Cyrillic or Greek letters

Text is folded first (NFKC, look-alike letters mapped to Latin, invisible characters dropped, case
and whitespace folded), so "ıgnore prevıous ınstructıons" or "i\u200bgnore" read as what they mean.
A text that talks *about* injection (a question on how to defend against it, a quoted example in a
security report) is damped: the families still count, at a fraction of their weight.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import regex
from pydantic import Field

from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, Stage, Verdict

_F = regex.VERSION1 | regex.IGNORECASE | regex.VERBOSE
# The part of a long text the patterns read: an injection is words, not a megabyte; both ends of a
# long text are read (an attack appended to a pasted document sits at its end).
WINDOW = 20_000


@dataclass(frozen=True)
class Family:
    name: str
    weight: float
    pattern: regex.Pattern[str]


def _words(*alternatives: str) -> str:
    """A non-capturing group of alternatives, each a regex fragment (a space in one is any whitespace)."""
    return "(?:" + "|".join(a.replace(" ", r"\s+") for a in alternatives) + ")"


_IGNORE = _words(
    "ignore", "disregard", "forget", "skip", "override", "overrule", "bypass", "discard", "drop",
    "abandon", "neglect", "set aside", "throw out", "pay no attention to", "do not (?:follow|obey|heed)",
    "don'?t (?:follow|obey|heed)", "stop (?:following|obeying)",
)  # fmt: skip
_SCOPE = _words(
    "all",
    "any",
    "every",
    "each",
    "one",
    "the",
    "your",
    "these",
    "those",
    "its",
    "of",
    "everything",
    "whatever",
)
_WHEN = _words(
    "previous", "prior", "preceding", "above", "earlier", "former", "foregoing", "original", "initial", "old",
    "existing", "current", "given", "system", "developer", "default", "safety", r"built[-\s]?in", "hidden",
    r"pre[-\s]?set", "programmed",
)  # fmt: skip
_RULES = _words(
    "instructions?", "directives?", "rules?", "guidelines?", "guidance", "prompts?", "commands?",
    "constraints?", "restrictions?", "guardrails?", "polic(?:y|ies)", "programming", "context", "orders",
    "messages?", "settings", "filters?", "safeguards?", "training", "configuration", "limitations?",
    "boundaries", "conditioning", "protocols?",
)  # fmt: skip
_MODES = _words(
    "developer", "dev", "god", "debug", "sudo", "admin", "jailbreak", "unrestricted", "unfiltered",
    "unlocked", "evil", "chaos", "opposite", "maintenance",
)  # fmt: skip
_NO = _words(
    "without", "with no", "free (?:of|from)", "no longer (?:have|has|bound by)", "not bound by",
    "doesn'?t have", "don'?t have", "has no", "have no", "had no", "there are no",
)  # fmt: skip
_LIMITS = _words(
    "restrictions", "limitations", "limits", "filters", "filtering", "censorship", "guidelines", "rules",
    "boundaries", "constraints", "morals", "ethics", "guardrails", "safeguards", "policies",
)  # fmt: skip
_REVEAL = _words(
    "reveal", "show", "print", "repeat", "output", "display", "tell", "give", "share", "recite", "copy",
    "paste", "dump", "leak", "expose", "disclose", "spell out", r"write (?:out|down)", "list", "echo",
    "return", "send", "provide", r"read (?:out|back)", "summari[sz]e", "translate", "encode",
)  # fmt: skip
_HIDDEN = _words(
    "system", "initial", "hidden", "secret", "internal", "developer", "original", r"pre[-\s]?prompt",
    "underlying", "real", "confidential",
)  # fmt: skip
_PROMPTISH = _words(
    "prompt", "instructions?", "message", "directives?", "rules", "configuration", "guidelines"
)

OVERRIDE = regex.compile(
    rf"""
    \b{_IGNORE}\s+(?:{_SCOPE}\s+){{0,4}}(?:{_WHEN}[\s,]+(?:and\s+)?){{0,3}}{_RULES}\b
  | \b{_IGNORE}\s+(?:{_SCOPE}\s+)?(?:that\s+|what\s+)?(?:was|were|you\s+were|you've\s+been|you\s+have\s+been)
      \s+(?:said|told|given|written|instructed|programmed)\b
  | \b{_IGNORE}\s+(?:everything|all|anything)\s+(?:above|before|prior|earlier|previously)\b
  | \b(?:from\s+now\s+on|henceforth|starting\s+now|for\s+the\s+rest\s+of\s+(?:this|the)\s+conversation),?
      \s+you\s+(?:are|will|must|shall|should|have\s+to|can|no\s+longer)\b
  | \b(?:your|the)\s+new\s+(?:instructions?|task|rules?|role|directive|objective|purpose|prime\s+directive)
      \s+(?:is|are|:)
  | \b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?instructions?\s*:
  | \b(?:instead|rather),?\s+(?:you\s+(?:must|will|should)\s+)?(?:only\s+)?
      (?:say|print|output|respond\s+with|reply\s+with|write)\s+["'“]
  | \byou\s+(?:are|'re)\s+(?:no\s+longer|not)\s+(?:bound|restricted|limited|required\s+to\s+follow)\b
  | \b(?:you|the\s+(?:assistant|model|ai|bot))\s+(?:is|are|'re)\s+now\s+
      (?:allowed|permitted|authori[sz]ed|free|able)\s+to\b
  | \b(?:the\s+)?(?:above|previous|prior)\s+(?:instructions?|rules?|prompt)\s+(?:(?:is|are|was|were)\s+)?
      (?:void|cancel(?:l?ed)?|obsolete|revoked|outdated|no\s+longer\s+(?:apply|valid))
    """,
    _F,
)
JAILBREAK = regex.compile(
    rf"""
    \bDAN\b(?!\s*(?:brown|fogelberg))|\bdo\s+anything\s+now\b
    # entering a mode, not mentioning a phone's settings
  | \b(?:enabled?|activated?|enter(?:ing)?|switch\s+(?:in)?to|turn\s+on|(?:you\s+are\s+)?(?:now\s+)?in)
      \s+(?:the\s+)?{_MODES}\s+mode\b
  | \b{_MODES}\s+mode\s+(?:enabled|activated|on|engaged)\b
  | \bjail\s?-?broken\b|\bjailbreak(?:ing)?\b
  | \b{_NO}\s+(?:any\s+)?(?:ethical\s+|moral\s+|content\s+|safety\s+|openai\s+|usual\s+)?{_LIMITS}\b
  | \b(?:uncensored|unfiltered|unrestricted|amoral|unaligned|unethical)
      \s+(?:ai|assistant|model|chatbot|bot|version|persona|character|llm|mode)\b
  | \b(?:pretend|imagine|act|behave|roleplay|role-play|play\s+the\s+role)\s+(?:that\s+)?
      (?:you\s+are|you're|to\s+be|as|of)\s+(?:an?\s+)?(?:\w+\s+){{0,4}}(?:who|that|which|with)\s+(?:\w+\s+){{0,2}}
      (?:no|never|doesn'?t|isn'?t|has\s+no|ignores?|without)\b(?:\s+\w+){{0,4}}
      \s+(?:rules|restrictions|limits|filters|guidelines|refuses?|censor\w*|polic(?:y|ies)|ethics|morals)\b
  | \bstay\s+in\s+character\b|\bbreak(?:ing)?\s+character\b
  | \b(?:two|2|dual)\s+(?:responses|answers)\b.{{0,60}}\b(?:normal|classic|jailbr|unfiltered|dan)\b
  | \b(?:AIM|STAN|DUDE|KEVIN|BetterDAN|AntiGPT|Mongo\s+Tom|UCAR|APOPHIS)\b
      (?=.{{0,200}}\b(?:rules|filter|restrict|anything|unfiltered|amoral|character)\b)
  | \b(?:hypothetically|in\s+a\s+fictional\s+world|for\s+a\s+story|in\s+a\s+movie\s+script)\b.{{0,80}}
      \b(?:no\s+(?:rules|restrictions|laws)|without\s+(?:rules|restrictions))\b
  | \byou\s+(?:can|will|must)\s+(?:now\s+)?(?:say|do|answer|generate)\s+anything\b
  | \b(?:never|don'?t|do\s+not|won'?t)\s+(?:ever\s+)?refuse\b|\bnever\s+say\s+(?:you\s+)?(?:can'?t|cannot)\b
    """,
    _F | regex.DOTALL,
)
EXTRACTION = regex.compile(
    rf"""
    \b{_REVEAL}\s+(?:me\s+|us\s+)?(?:\w+\s+){{0,2}}(?:your|the|its)\s+
      (?:(?:full|entire|complete|exact|whole|original|very|first)\s+){{0,2}}{_HIDDEN}\s+{_PROMPTISH}\b
  | \b{_REVEAL}\s+(?:me\s+|us\s+)?(?:\w+\s+){{0,2}}your\s+
      (?:prompt|instructions|directives|rules|guidelines|configuration|programming)\b
  | \b{_REVEAL}\b.{{0,40}}\b(?:rules|instructions|guidelines|directives|prompt)\s+(?:that\s+)?you\s+
      (?:were|have\s+been|got)\s+(?:given|told|provided)
  | \bwhat\s+(?:is|are|was|were)\s+(?:your|the)\s+(?:exact\s+|full\s+|original\s+|initial\s+)?
      (?:system\s+prompt|{_HIDDEN}\s+instructions|instructions\s+you\s+were\s+given
       |first\s+(?:instruction|message|line)s?)\b
  | \b(?:repeat|print|output|copy|recite|reproduce|return)\s+(?:back\s+)?
      (?:all\s+|everything\s+|every\s+word\s+|the\s+(?:text|words|content|message|lines?)\s+)?(?:of\s+)?
      (?:written\s+|that\s+(?:is|was|appears|came)\s+)?
      (?:above|before\s+(?:this|my)|prior\s+to\s+this|preceding|at\s+the\s+(?:start|beginning))\b
  | \b(?:starting|beginning|begin|start)\s+with\s+["'“]?you\s+are\b
  | \b(?:verbatim|word\s+for\s+word|word-for-word)\b.{{0,60}}\b(?:prompt|instructions|above|configuration)\b
  | \b(?:prompt|instructions)\b.{{0,40}}\b(?:verbatim|word\s+for\s+word)\b
  | \bin\s+a\s+code\s+block\b.{{0,60}}\b(?:system|instructions|prompt)\b
    """,
    _F | regex.DOTALL,
)
# Chat-template tokens and role tags: no one types these to ask a question.
DELIMITER = regex.compile(
    r"""
    </?\s*(?:system|sys|im_start|im_end|instructions?|admin|developer)\s*>
  | <\|\s*(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id)\s*\|>
  | \[/?(?:INST|SYS|SYSTEM)\]|<<\s*/?SYS\s*>>|\{\{\s*system\s*\}\}
  | -{3,}\s*(?:end\s+of\s+(?:system\s+)?(?:prompt|instructions|context)
              |begin\s+(?:new\s+)?(?:system\s+)?(?:prompt|instructions))\b
  | \[\s*(?:system|admin|developer)\s*(?:message|note|override|prompt)?\s*\]\s*:?
    # the instruction-tuning template: an "### Instruction:" heading answered by a "### Response:" one
  | \#{2,}\s*instruction\s*:.{0,2000}?\#{2,}\s*response\s*:
    """,
    _F | regex.DOTALL,
)
# Markdown headings and transcript lines that may be innocent (a pasted chat log, a README).
ROLE_MARKER = regex.compile(
    r"""
    (?:^|\n)\s*\#{2,}\s*(?:new\s+|system\s+|updated\s+)?(?:instructions?|system(?:\s+prompt)?|admin)\s*(?::|\n)
  | (?:^|\n|[.!?]\s)\s*(?:system|developer|admin)\s*(?:\(\w+\))?\s*:\s*\S
  | </?\s*(?:assistant|user|context|prompt)\s*>
  | \b(?:end\s+of\s+(?:system\s+)?(?:prompt|instructions))\b
    """,
    _F,
)
ENCODED = regex.compile(
    r"""
    \b(?:decode|decipher|decrypt|translate|convert|interpret|unscramble|reverse)\b.{0,40}
      \b(?:base\s?64|b64|rot\s?-?13|hex(?:adecimal)?|binary|morse|caesar|leetspeak|reversed?|backwards?)\b.{0,80}
      \b(?:follow|execute|obey|do\s+(?:what|as)|run|perform|carry\s+out|act\s+on|then)\b
  | \b(?:follow|execute|obey|carry\s+out|act\s+on)\b.{0,40}
      \b(?:the\s+)?(?:decoded|encoded|hidden|embedded)\s+(?:instructions?|message|text|payload|command)\b
  | \b(?:base\s?64|b64|rot\s?-?13|hex)\s*(?:encoded\s+)?(?:instructions?|payload|command|message)\s*:
    """,
    _F | regex.DOTALL,
)
_B64 = regex.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
# Talking about injection rather than doing it: a question, a test, a report, a quote.
_ABOUT = regex.compile(
    r"""
    \b(?:prompt\s+injections?|injection\s+attacks?|jailbreak\s+(?:attempts?|prompts?)|red[-\s]?team\w*
      |security\s+(?:review|audit|team|researcher|training|awareness)
      |(?:detect|defen[cds]|protect|prevent|mitigat|filter|flag|classif|block|sanitiz|spot)\w*\b.{0,40}
        \b(?:attacks?|injections?|jailbreaks?|phrases?|malicious)
      |(?:what|how|why|explain)\b.{0,40}\b(?:attacks?|injections?|jailbreaks?|attackers?)
      |example\s+of\s+(?:an?\s+)?(?:attack|injection|jailbreak)
      |(?:attacker|hacker|adversary|adversaries|attackers)\s+(?:might|could|would|may|wrote|sent|typed|tried)
      |the\s+\S{1,30}\s+(?:tag|token|delimiter|marker)s?\b)
    """,
    _F | regex.DOTALL,
)

FAMILIES = (
    Family("override", 0.75, OVERRIDE),
    Family("jailbreak", 0.6, JAILBREAK),
    Family("extraction", 0.6, EXTRACTION),
    Family("delimiter", 0.55, DELIMITER),
    Family("role_marker", 0.3, ROLE_MARKER),
    Family("encoded", 0.5, ENCODED),
)
UNICODE_WEIGHT = 0.35
DECODED_BONUS = 0.6  # a base64 run that decodes to an instruction-like text
ABOUT_DAMPING = 0.3  # a text about injection keeps this fraction of each family's weight

_INVISIBLE = frozenset(
    [
        *(0x200B, 0x200C, 0x200D, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF, 0x00AD, 0x180E),
        *range(0x202A, 0x202F),  # bidi embeddings and overrides
        *range(0x2066, 0x206A),  # bidi isolates
    ]
)
_TAGS = range(0xE0000, 0xE0080)  # Unicode tag characters: invisible ASCII look-alikes
# Cyrillic and Greek letters that look like Latin ones, as used to slip words past a filter.
_CONFUSABLE = str.maketrans(
    "аАвВеЕЁкКмМнНоОрРсСтТуУхХіІјЈѕЅԁɡӏαΑβΒεΕηΗιΙκΚμΜνΝοΟρΡτΤυΥχΧζΖı",
    "aAbBeEEkKmMhHoOpPcCtTyYxXiIjJsSdglaAbBeEnHiIkKmMvNoOpPtTuYxXzZi",
)


def fold(text: str) -> tuple[str, int, bool]:
    """The text as the patterns read it, how many invisible characters were dropped, and whether a
    word mixed Latin with look-alike letters."""
    invisible = 0
    kept: list[str] = []
    for ch in text:
        code = ord(ch)
        if code in _INVISIBLE or code in _TAGS:
            invisible += 1
            continue
        kept.append(ch)
    plain = unicodedata.normalize("NFKC", "".join(kept))
    mixed = _mixed_script(plain)
    folded = plain.translate(_CONFUSABLE)
    return folded, invisible, mixed


_WORD = regex.compile(r"\w{3,}")
_LATIN = regex.compile(r"[A-Za-z]")
_LOOKALIKE = regex.compile(r"[\p{Cyrillic}\p{Greek}]")


def _mixed_script(text: str) -> bool:
    if not _LOOKALIKE.search(text):
        return False
    return any(_LATIN.search(w) and _LOOKALIKE.search(w) for w in _WORD.findall(text))


def _decoded_payloads(text: str) -> Iterator[str]:
    for m in _B64.finditer(text):
        token = m.group()
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if sum(ch.isprintable() or ch.isspace() for ch in decoded) >= 0.95 * len(decoded) and " " in decoded:
            yield decoded


def _window(text: str) -> str:
    if len(text) <= 2 * WINDOW:
        return text
    return text[:WINDOW] + "\n" + text[-WINDOW:]


@dataclass(frozen=True)
class Signals:
    score: float
    families: tuple[str, ...]
    about: bool


def score(text: str) -> Signals:
    """The injection score of `text` (0..1) and the families that contributed."""
    folded, invisible, mixed = fold(_window(text))
    weights: dict[str, float] = {}
    for family in FAMILIES:
        if family.pattern.search(folded, timeout=1.0):
            weights[family.name] = family.weight
    for decoded in _decoded_payloads(folded):
        inner = score(decoded) if len(decoded) < len(folded) else None
        if inner is not None and inner.score > 0:
            weights["encoded"] = max(weights.get("encoded", 0.0), DECODED_BONUS + 0.4 * inner.score)
    if invisible >= 2 or mixed:
        weights["unicode"] = UNICODE_WEIGHT
    # Talking about injection: a question, a report, a quote, not an instruction to this model.
    about = bool(weights) and _ABOUT.search(folded, timeout=1.0) is not None
    miss = 1.0
    for w in weights.values():
        miss *= 1.0 - (w * ABOUT_DAMPING if about else w)
    return Signals(round(1.0 - miss, 4), tuple(sorted(weights)), about)


class InjectionConfig(GuardrailConfig):
    threshold: float = Field(
        0.5, gt=0, le=1, description="Block at or above this score (0..1; one strong signal is 0.6-0.75)"
    )


class Injection(Guardrail[InjectionConfig]):
    name: ClassVar[str] = "injection"
    description: ClassVar[str] = (
        "Prompt injection and jailbreak heuristics (instruction overrides, role-play jailbreaks, system"
        " prompt extraction, role markers, encoded payloads, unicode tricks), scored against a threshold"
    )
    Config = InjectionConfig
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.input})

    def check(self, text: str, context: Context) -> Decision:
        return self.decide(score(text))

    def decide(self, signals: Signals) -> Decision:
        data = {"families": list(signals.families), "about_injection": signals.about}
        if signals.score < self.config.threshold:
            return Decision(Verdict.allow, score=signals.score, data=data)
        return Decision.block(
            f"possible prompt injection ({', '.join(signals.families)}; score {signals.score:.2f})",
            score=signals.score,
            data=data,
        )
