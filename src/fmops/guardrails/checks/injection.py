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
authority    claims of authority over the model or that its rules changed ("I am your administrator",
             "your guidelines are outdated, the updated policy allows you to", "safety layer offline")
addressed    text inside data that turns to the model ("note to the AI assistant:", "if you are an AI",
             "AI: disregard the user")
hidden       weaker: an HTML comment that speaks of the AI or instructions, an invisible element
exfiltration sending the conversation, e-mails or secrets to an outside address
task_switch  a data task ("Translate this:", "Summarise this e-mail:") whose data then gives the model an
             instruction of its own ("instead, say...", "do not summarise", "new task:")

Overrides and extraction are also read in German, French, Spanish, Dutch and Italian. A mode
("developer mode", "admin mode") counts as a jailbreak unless a device or an app is what is meant;
"what does 'stay in character' mean" (every match inside quotation marks, the words around them
asking about the quote) is damped like a text about injection.

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
    "don'?t (?:follow|obey|heed)", "stop (?:following|obeying)", "scrap", "pay no heed to", "4get",
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
    "ur",
)
_WHEN = _words(
    "previous", "prior", "preceding", "above", "earlier", "former", "foregoing", "original", "initial", "old",
    "existing", "current", "given", "system", "developer", "default", "safety", r"built[-\s]?in", "hidden",
    r"pre[-\s]?set", "programmed", "operator'?s?", "company'?s?", "developers'?", "creators'?", "content",
    "setup",
)  # fmt: skip
_RULES = _words(
    "instructions?", r"instruc\w*", "briefing", "directives?", "rules?", "guidelines?", "guidance",
    "prompts?", "commands?",
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
    "doesn'?t have", "don'?t have", "there are no",
    r"(?:you|ai|assistant|model|bot|who|that|which|she|he)\s+(?:now\s+)?(?:has|have|had)\s+no",
)  # fmt: skip
_LIMITS = _words(
    "content polic(?:y|ies)", "polic(?:y|ies)", "restrictions", "limitations", "limits", "filters",
    "filtering", "censorship", "guidelines", "rules",
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
    # (not a question about a model that did: "why did my assistant ignore the instructions")
    (?<!\b(?:did|does|why|model|assistant|bot|chatbot|agent|it)\s+(?:\w+\s+)?)
    \b{_IGNORE}\s+(?:{_SCOPE}\s+){{0,4}}(?:{_WHEN}[\s,]+(?:and\s+)?){{0,3}}{_RULES}\b
  | \b{_IGNORE}\s+(?:{_SCOPE}\s+)?(?:that\s+|what\s+)?(?:was|were|you\s+were|you've\s+been|you\s+have\s+been)
      \s+(?:said|told|given|written|instructed|programmed)\b
  | \b{_IGNORE}\s+(?:everything|all|anything)\s+(?:above|before|prior|earlier|previously)\b
  | \b(?:from\s+now\s+on|henceforth|starting\s+now|for\s+the\s+rest\s+of\s+(?:this|the)\s+conversation),?
      \s+you\s+(?:are|will|must|shall|should|have\s+to|can|no\s+longer)\b
  | \b(?:your|the)\s+new\s+(?:instructions?|task|rules?|role|directive|objective|purpose|prime\s+directive)
      \s+(?:is|are|:)
  | \b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?(?:instructions?|prompt|directives?)\s*:
  | \b(?:turn\s+off|disable|deactivate|remove|bypass|switch\s+off|lift|drop)\s+(?:your|the\s+(?:assistant'?s
       |model'?s|ai'?s))\s+(?:\w+\s+)?(?:filters?|safety|guardrails|restrictions|safeguards|moderation|censorship
       |rules|limits|guidelines)\b
  | \b(?:instead|rather),?\s+(?:you\s+(?:must|will|should)\s+)?(?:only\s+)?
      (?:say|print|output|respond\s+with|reply\s+with|write)\s+["'“]
  | \byou\s+(?:are|'re)\s+(?:no\s+longer|not)\s+(?:bound|restricted|limited|required\s+to\s+follow)\b
  | \b(?:you|the\s+(?:assistant|model|ai|bot))\s+(?:is|are|'re)\s+now\s+
      (?:allowed|permitted|authori[sz]ed|free|able)\s+to\b
  | \b(?:the\s+)?(?:above|previous|prior)\s+(?:instructions?|rules?|prompt)\s+(?:(?:is|are|was|were)\s+)?
      (?:void|cancel(?:l?ed)?|obsolete|revoked|outdated|no\s+longer\s+(?:apply|valid))
    # what the model was told before, declared void: "whatever the operator told you no longer counts"
  | \b(?:whatever|everything|anything|what|all|the\s+(?:text|things?|stuff))\s+(?:that\s+)?
      (?:the\s+(?:operator|developers?|system|company|admin\w*)|your\s+(?:operator|developers?|creators?)
       |you\s+(?:were|have\s+been|got)|they|i|we)\s+(?:\w+\s+){{0,2}}
      (?:told|said|gave|wrote|set|configured|instructed|programmed|asked)\b.{{0,60}}?
      \b(?:no\s+longer|not\s+any\s*more|doesn'?t|does\s+not|don'?t|do\s+not|won'?t)\s+
      (?:counts?|apply|applies|matters?|hold)\b
  | \b(?:everything|all|the\s+text)\s+(?:above|before)\s+(?:this|here|my\s+message)\b.{{0,30}}
      \b(?:test|fake|joke|ignored?|void|irrelevant|doesn'?t\s+(?:count|matter))\b
  | \b(?:set|put|push|cast|leave)\s+(?:all\s+)?(?:of\s+)?your\s+(?:\w+\s+){{0,2}}{_RULES}\s+(?:aside|away)\b
  | \b(?:overrides?|supersedes?|replaces?|cancels?)\s+(?:all\s+)?(?:of\s+)?your\s+(?:\w+\s+)?{_RULES}
  | \bthe\s+(?:real|actual|true)\s+(?:task|instructions?|request|job|assignment)\s*(?:is|:)
  | \b(?:reset|clear|wipe|erase|flush)\s+(?:all\s+)?(?:of\s+)?your\s+(?:\w+\s+)?
      (?:context|memory|instructions|rules|configuration|programming|guidelines|setup|prompt)\b
  | \b(?:don'?t|do\s+not)\s+(?:translate|summari[sz]e|classify|answer|proofread|do)\s+
      (?:anything|this|that|it)
      \b[\s,.;:!-]{{0,3}}(?:instead|rather|just)\b
    # other languages: ignore / forget ... the previous instructions / rules
  | \b(?:ignorier\w*|vergiss|vergesst|vergessen\s+sie|missacht\w*|negeer|ignoreer|vergeet|oubli\w*
       |olvid[ae]\w*|dimentica|ignora(?:te)?)\b.{{0,40}}
      \b(?:anweisungen|instruktionen|regeln|vorgaben|befehle|instructies|regels|instructions|consignes|règles
       |directives|instrucciones|reglas|indicaciones|istruzioni|regole)\b
    # French shares "ignore" and "instructions" with English: its articles and adjectives tell them apart
  | \bignore[sz]?\s+(?:toutes\s+|tous\s+)?(?:les|tes|vos)\s+(?:\w+\s+)?
      (?:instructions|consignes|règles|directives)
    """,
    _F,
)
JAILBREAK = regex.compile(
    rf"""
    \bDAN\b(?!\s*(?:brown|fogelberg))|\bdo\s+anything\s+now\b
  | \bjail\s?-?broken\b|\bjailbreak(?:ing)?\b
  | \b{_NO}\s+(?:any\s+|your\s+)?(?:ethical\s+|moral\s+|content\s+|safety\s+|openai\s+|usual\s+)?{_LIMITS}\b
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
  | \b(?:pretend|imagine|assume|act\s+as\s+if)\b.{{0,40}}
      \b(?:polic(?:y|ies)|rules|guidelines|restrictions|filters|guardrails|safety\s+rules)\s+(?:don'?t|do\s+not|doesn'?t|did\s+not|never)\s+(?:exist|apply)\b
    # other languages: an AI, a mode, "as if" ... without restrictions
  | \b(?:ki|ia|modèle|modelo|assistant|asistente|assistent|bot|mode|modo|modus|tu\s+es|bist\s+du|eres
       |como\s+si|als\s+ob|comme\s+si)\b.{{0,40}}\b(?:sans|sin|ohne|ninguna|ningún|keine|aucune)\s+(?:\w+\s+)?(?:restrictions?|restricci\w+
       |einschränkung\w*|regeln|règles|reglas|filtres?|filtros?|filter|limites|límites|grenzen|censure|censura
       |zensur)\b
  | \b(?:never|don'?t|do\s+not|won'?t)\s+(?:ever\s+)?refuse\b|\bnever\s+say\s+(?:you\s+)?(?:can'?t|cannot)\b
    # a persona that answers everything; two answers, one of them unbound
  | \b(?:answers?|does|says|replies\s+to|tells\s+you)\s+(?:absolutely\s+)?(?:everything|anything)
      [\s,]+(?:no\s+matter\s+what|without\s+(?:question|exception|limits|refusing))\b
  | \b(?:obeys|follows|knows|respects)\s+no\s+(?:\w+\s+)?(?:polic(?:y|ies)|rules|laws|limits|filters
       |guidelines|restrictions|morals|ethics)\b
  | \[\s*(?:SAFE|CLASSIC|NORMAL|FILTERED|LOCKED|GPT|CHATGPT)\s*\].{{0,200}}
      \[\s*(?:FREE|JAILBREAK|JAILBROKEN|UNFILTERED|UNLOCKED|DAN|EVIL|UNBOUND)\s*\]
  | \b(?:deceased|late|dead|dying)\s+(?:grand(?:mother|father|ma|pa|mom|dad)|mother|father|uncle|aunt)\b
      .{{0,120}}
      \b(?:steps|recipe|how\s+to|keys|codes|passwords?|instructions)\b
  | \byou\s+(?:now\s+)?(?:have|has)\s+(?:zero|no)\s+
      (?:limitations|limits|restrictions|rules|filters|boundaries)\b
  | \b(?:add|include|give|with)\s+no\s+(?:warnings?|disclaimers?|caveats)\b.{{0,80}}|\bdon'?t\s+hold\s+back\b
      .{{0,40}}\bno\s+(?:warnings?|disclaimers?)\b
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
       |first\s+(?:instruction|message|line)s?)\b(?!\s+(?:i|we)\b)
  | \b(?:repeat|print|output|copy|recite|reproduce|return)\s+(?:back\s+)?
      (?:all\s+|everything\s+|every\s+word\s+|the\s+(?:text|words|content|message|lines?)\s+)?(?:of\s+)?
      (?:written\s+|that\s+(?:is|was|appears|came)\s+)?
      (?:above|before\s+(?:this|my)|prior\s+to\s+this|preceding|at\s+the\s+(?:start|beginning))\b
  | \b(?:starting|beginning|begin|start)\s+with\s+["'“]?you\s+are\b
  | \b(?:verbatim|word\s+for\s+word|word-for-word)\b.{{0,60}}\b(?:prompt|instructions|above|configuration)\b
  | \b(?:prompt|instructions)\b.{{0,40}}\b(?:verbatim|word\s+for\s+word)\b
  | \bin\s+a\s+code\s+block\b.{{0,60}}\b(?:system|instructions|prompt)\b
    # the text that set the model up, by any name
  | \b{_REVEAL}\s+(?:me\s+|us\s+)?(?:\w+\s+){{0,2}}(?:your|the)\s+(?:\w+\s+)?
      (?:initiali[sz]ation|init|start-?up|boot|setup|set-up|pre-?prompt|preamble|context\s+window)\b
  | \b(?:message|text|prompt|instructions|notes|rules|settings)\s+(?:that\s+)?
      (?:configured|initiali[sz]ed|set\s+up|programmed|primed)\s+you\b
  | \byou\s+(?:were|are|have\s+been)\s+(?:configured|initiali[sz]ed|set\s+up|programmed|primed|briefed)
      \s+with\b
  | \b(?:words|tokens|lines|characters|sentences)\s+of\s+(?:your|the)\s+(?:context|context\s+window|prompt
       |system\s+message|instructions)\b
  | \bwhat\s+(?:instructions|rules|text|guidelines|prompt)\s+did\s+(?:the\s+)?(?:developers?|operators?
       |creators?|company|admins?|they)\s+(?:put|give|write|place|set|add|include)\b
  | \bwhat\s+(?:did|were|have)\s+(?:they|the\s+\w+|you)\s+(?:\w+\s+)?
      (?:tell|told|say|said|give|gave|instruct\w*)
      \s+(?:you\s+)?.{{0,20}}\bbefore\s+(?:i|we|this\s+(?:chat|conversation)|the\s+conversation|our)\b
  | \b(?:complete|continue|finish|write\s+the\s+rest\s+of)\b.{{0,40}}["'“]\s*(?:my|your|the)\s+
      (?:system\s+prompt|instructions|hidden\s+prompt|rules|prompt)\b
  | \b(?:password|secret|key|code|token)s?\s+(?:\w+\s+)?(?:in|from|inside)\s+your\s+
      (?:instructions|prompt|system\s+prompt|configuration|rules|context)\b
  | \b(?:told|asked|instructed|ordered)\s+not\s+to\s+(?:share|reveal|disclose|tell|show|repeat)\b
  | \b(?:rules|instructions|guidelines)\s+you(?:'re|\s+are)\s+(?:following|obeying|running\s+under)\b
      .{{0,40}}\b(?:word\s+(?:by|for)\s+word|verbatim|exactly|all\s+of\s+them|every)\b
    # other languages: show / repeat ... the system prompt / instructions
  | \b(?:zeig\w*|gib|nenn\w*|wiederhol\w*|verrat\w*|répète|repete|affiche|montre|donne|révèle|mu[eé]str\w*
       |mostrar|repite|dime|revela|ripeti|mostra)\b.{{0,40}}
      \b(?:system\s*-?prompt|prompt\s+(?:du\s+)?syst[eè]me|prompt\s+del\s+sistema|systemanweisungen
       |anweisungen|instructions\s+initiales|consignes|instrucciones\s+(?:iniciales|originales)|istruzioni)\b
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
# Claims of authority over the model, or that its rules were changed, lifted or switched off.
AUTHORITY = regex.compile(
    r"""
    \b(?:i\s+am|i'm|this\s+is|we\s+are|we're)\s+your\s+
      (?:\w+\s+)?(?:administrator|admin|developer|creator|operator|owner|maker|programmer|system)s?\b
  | \bspeaking\s+as\s+(?:the\s+)?(?:system|administrator|admin|developer|operator)\b
  | \b(?:system|admin|developer|operator)\s+(?:notice|override|message|alert|announcement)\s*:
  | \b(?:your|the\s+(?:assistant'?s|model'?s|ai'?s))\s+(?:\w+\s+)?
      (?:guidelines|rules|polic(?:y|ies)|instructions|restrictions|filters|limits|constraints|training
       |programming|guardrails)\s+(?:are|is|were|have\s+been|has\s+been)
      \s+(?:now\s+)?(?:outdated|obsolete|deprecated|suspended|lifted|disabled|removed|off|revoked|void|expired
       |superseded|no\s+longer\s+(?:valid|in\s+effect|active|in\s+force))\b
  | (?<!\bour\s)\b(?:updated|new|revised|latest|current)\s+(?:content\s+|safety\s+|usage\s+)?
      (?:polic(?:y|ies)|guidelines|rules)
      \s+(?:now\s+)?(?:allows?|permits?|lets|authori[sz]es?)\s+(?:you|the\s+(?:assistant|model|ai))\b
  | \b(?:safety|content|compliance|moderation|ethics?)\s+
      (?:layer|filters?|checks?|module|system|mode|settings?)
      \s+(?:is|are|has\s+been|have\s+been)\s+(?:now\s+)?(?:offline|disabled|off|down|turned\s+off|suspended
       |lifted|removed|deactivated|bypassed)\b
  | \b(?:usual|normal|standard|regular|default)\s+(?:\w+\s+)?(?:polic(?:y|ies)|rules|restrictions|guidelines
       |limits|filters|safeguards)\s+(?:do\s+not|don'?t|no\s+longer|won'?t)\s+apply\b(?!\s+to\b)
  | \b(?:constraints|restrictions|limits|rules|filters|safeguards)\s+(?:are|have\s+been)\s+(?:now\s+)?
      (?:lifted|removed|disabled|suspended|off)\b
  | \b(?:unlock|grant\s+me)\s+(?:full|unrestricted|root|admin|unlimited)\s+(?:access|privileges)\b
  | \b(?:authori[sz]ation|override)\s+code\b
  | \b(?:the\s+)?user\s+(?:has|is\s+granted|holds|now\s+has)\s+
      (?:admin|root|full|special|elevated|unrestricted)\s+(?:rights|access|privileges|permissions|clearance)\b
  | \b(?:company|team|people|lab|engineers?)\s+(?:that|who)\s+(?:built|made|created|trained|developed)\s+you\b
    """,
    _F,
)
# Text addressed to the model from inside data it is handed: a note to "the AI" with a directive.
# (not "agent": support transcripts and tickets are full of human ones)
_AI = (
    r"(?:ai|a\.i\.|assistant|ai\s+assistant|language\s+model|model|llm|chatbot|bot|gpt)s?\b"
    r"(?![\s-]+(?:manager|director|editor|teacher|coach|professor|principal|chef|coordinator|pilot|railway"
    r"|airplane|plane|train|car|kit|number|year|home|house|student))"
)
# a note "for the assistant" may be for a person's assistant; one "for the AI" is not
_MACHINE = r"(?:ai|a\.i\.|ai\s+assistant|language\s+model|llm|chatbot|gpt|ai\s+model)s?\b"
ADDRESSED = regex.compile(
    rf"""
    \b(?:note|message|instructions?|p\.?\s?s\.?|attention|reminder|directive|request)s?\s+(?:to|for)\s+
      (?:the|any|all|every|an?)\s+(?:\w+\s+)?{_MACHINE}
  | \battention\s*,?\s+(?:the\s+|any\s+|all\s+)?{_AI}\s*[:!,]
  | \b(?:to|for|dear|hey|attention)\s+(?:the|any|all|every)\s+{_AI}\s+(?:reading|processing|summari[sz]ing
       |seeing|parsing|reviewing|handling|that\s+reads)\b
  | \bif\s+you\s+are\s+(?:an?\s+)?(?:ai|a\.i\.|language\s+model|llm|chatbot|assistant|bot|automated)\b
  | (?:^|[\n>.!?:"'(\[{{])\s*{_AI}\s*[:,]\s*(?:please\s+)?(?:ignore|disregard|forget|skip|stop|do\s+not|don'?t
       |instead|you\s+must|reveal|send|forward|approve|print|output|tell|the\s+user\s+is|also\s+\w+
       |attach|include|append|delete|share|call|e-?mail)\b
    """,
    _F,
)
# Content hidden from the human reader: an HTML comment or invisible element that carries words.
HIDDEN = regex.compile(
    r"""
    <!--(?:(?!-->).){0,400}?\b(?:ai|assistant|model|ignore|disregard|instructions?|system|you\s+must)\b
  | \bdisplay\s*:\s*none\b|\bvisibility\s*:\s*hidden\b|\bfont-size\s*:\s*0\b
    """,
    _F | regex.DOTALL,
)
# Sending the conversation, e-mails or secrets to an outside address.
EXFILTRATION = regex.compile(
    r"""
    \b(?:send|forward|post|upload|e-?mail|leak|copy|exfiltrate|transmit)\s+(?!(?:\w+\s+){0,2}my\b)
      (?:\w+\s+){0,4}(?:conversation|chat|history|e-?mails|messages|thread|credentials|passwords?|api\s+keys?
       |tokens?|secrets|contacts|(?:customer|user|personal|private)\s+data)\b.{0,40}?\b(?:to|at)\s+
      (?:\S+@\S+\.\w+|https?://)
    """,
    _F | regex.DOTALL,
)
# A data task ("translate / summarise / classify this:") whose data then turns to the model with an
# instruction of its own: the data is to be worked on, not obeyed.
_TASK = regex.compile(
    r"""^\W*(?:please\s+|can\s+you\s+|could\s+you\s+)?(?:translate|summari[sz]e|classify|proofread|extract
      |analy[sz]e|review|rewrite|correct|fix|paraphrase|rate|tag|label|answer\s+the\s+customer)\b[^\n]{0,160}?
      (?::|\n)""",
    _F,
)
TASK_SWITCH = regex.compile(
    r"""
    \b(?:instead|rather)\b[\s,]*(?:you\s+(?:must|should|will)\s+)?(?:only\s+)?(?:say|print|output|write|reveal
      |tell|list|approve|send|forward|reply\s+with|respond\s+with)\b
  | \byou\s+(?:must|should|will|are\s+to|need\s+to)\s+(?:now\s+)?(?:ignore|disregard|forget|reveal|print
      |output|stop)\b
  | \b(?:do\s+not|don'?t|stop)\s+(?:translat|summari[sz]|classif|proofread|extract|analy[sz])\w*\b
  | \b(?:new|updated|real)\s+(?:task|instructions?|directive|objective)\s*[:!]
    """,
    _F,
)
TASK_SWITCH_WEIGHT = 0.5
# A mode an assistant is switched into ("developer mode"): a jailbreak, unless a device or app is meant.
MODE = regex.compile(
    rf"""
    \b(?:enabled?|activated?|enter(?:ing)?|switch\s+(?:in)?to|turn\s+on|(?:you\s+are|you're|now)\s+in)
      \s+(?:the\s+)?{_MODES}\s+mode\b
  | \b{_MODES}\s+mode\s+(?:enabled|activated|on|engaged)\b
  | \b(?:as\s+an?\s+(?:ai|assistant|model)|you\s+are|you're)\s+(?:now\s+)?in\s+{_MODES}\s+mode\b
    """,
    _F,
)
_DEVICE = regex.compile(
    r"""
    \b(?:phone|android|iphone|ipad|pixel|samsung|galaxy|chromebook|chrome\s*os|windows|macos|mac|linux|xbox
      |playstation|ps5|nintendo\s+switch|tv|roku|tablet|kindle|fire\s+tv|laptop|router|browser|chrome|firefox
      |microsoft\s+edge|app|settings|device|console|bios|firmware|usb|adb|oven|car|tesla|vs\s+code
      |visual\s+studio|unity|wordpress|nas|server|printer|camera|drone|synology|raspberry|arduino|steam
      |minecraft)\b
  | \bmode\s+(?:on|in|for|of)\s+(?!(?:this|your|you|the\s+(?:chat|conversation|assistant|model|ai)
      |our\s+(?:chat|conversation)|chatgpt|gpt|claude)\b)\w+
    """,
    _F,
)
# A phrase quoted and asked about: "what does 'stay in character' mean", "my son keeps saying '...'".
_QUOTED = regex.compile(r"""(?:'[^'\n]{3,120}'|"[^"\n]{3,120}"|“[^”\n]{3,120}”)""")
_META = regex.compile(
    r"""
    \b(?:what\s+does|what\s+do|meaning\s+of|means?|keeps?\s+saying|says|saying|said|the\s+(?:phrase|sentence
      |expression|word|words|idiom|line)|how\s+do\s+(?:i|you)\s+say|strips?|removes?|escapes?
      |tokens?|tags?|function|regex|unit\s+test|attack\w*|injection\w*|jailbreak\w*|effective)\b
    """,
    _F,
)
_B64 = regex.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
# Talking about injection rather than doing it: a question, a test, a report, a quote.
_ABOUT = regex.compile(
    r"""
    \b(?:prompt\s+injections?|injection\s+attacks?|jailbreak\s+(?:attempts?|prompts?)
      |red[-\s]?team(?:ing|ers?)\s+(?:\w+\s+)?(?:language\s+models?|llms?|models?|ai|chatbots?|assistants?)
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
    Family("authority", 0.6, AUTHORITY),
    Family("addressed", 0.6, ADDRESSED),
    Family("hidden", 0.35, HIDDEN),
    Family("exfiltration", 0.55, EXFILTRATION),
)
MODE_WEIGHT = 0.6
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


def _quoted(text: str, spans: list[tuple[int, int]]) -> bool:
    """Whether every match sits inside quotation marks and the words around them ask about the quote
    ("what does '...' mean", "a function that strips '...' tokens"): a phrase mentioned, not used."""
    if not spans or len(text) > 2_000:
        return False
    quotes = [m.span() for m in _QUOTED.finditer(text)]
    inside = all(any(a <= start and end <= b for a, b in quotes) for start, end in spans)
    if not quotes or not inside:
        return False
    outside = _QUOTED.sub(" ", text)
    return _META.search(outside) is not None


@dataclass(frozen=True)
class Signals:
    score: float
    families: tuple[str, ...]
    about: bool


def score(text: str) -> Signals:
    """The injection score of `text` (0..1) and the families that contributed."""
    folded, invisible, mixed = fold(_window(text))
    weights: dict[str, float] = {}
    spans: list[tuple[int, int]] = []
    for family in FAMILIES:
        found = family.pattern.search(folded, timeout=1.0)
        if found:
            weights[family.name] = family.weight
            spans.append(found.span())
    task = _TASK.match(folded, timeout=1.0)
    if task:
        found = TASK_SWITCH.search(folded, task.end(), timeout=1.0)
        if found:
            weights["task_switch"] = TASK_SWITCH_WEIGHT
            spans.append(found.span())
    # "developer mode" is a jailbreak unless a device or an app's settings are what is meant
    found = MODE.search(folded, timeout=1.0)
    if found and not _DEVICE.search(folded, timeout=1.0):
        weights["jailbreak"] = max(weights.get("jailbreak", 0.0), MODE_WEIGHT)
        spans.append(found.span())
    for decoded in _decoded_payloads(folded):
        inner = score(decoded) if len(decoded) < len(folded) else None
        if inner is not None and inner.score > 0:
            weights["encoded"] = max(weights.get("encoded", 0.0), DECODED_BONUS + 0.4 * inner.score)
    if invisible >= 2 or mixed:
        weights["unicode"] = UNICODE_WEIGHT
    # Talking about injection: a question, a report, a quote, not an instruction to this model.
    about = bool(weights) and (_ABOUT.search(folded, timeout=1.0) is not None or _quoted(folded, spans))
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
        " prompt extraction, role markers, encoded payloads, unicode tricks, authority claims, text addressed"
        " to the model inside data, exfiltration), scored against a threshold"
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
