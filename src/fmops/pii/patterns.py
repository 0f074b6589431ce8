"""The compiled patterns each PII type starts from. A pattern finds candidates; `detect` then checks them
(checksums, digit counts, context), so a pattern can be generous without being wrong.

Possessive quantifiers (the `regex` package) keep a run of digit groups whole: the engine may not give
groups back to find a shorter, valid-looking phone number inside an IBAN or a long order number.
"""

from __future__ import annotations

import regex

_F = regex.VERSION1 | regex.VERBOSE

EMAIL = regex.compile(
    r"""(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@
        (?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])""",
    _F,
)

# Not inside a token, after an order "#", a path, a version, a time, or another digit group.
_DIGITS_BEFORE = r"(?<![\w+#/.:@-])(?<!\d[ .-])(?<!\d\)\s)"
_DIGITS_AFTER = r"(?![\w-]|[ .-]?\d|[.,]\d|\))"
PHONE = regex.compile(
    _DIGITS_BEFORE
    + r"""(?:
        (?:\+|\b00)[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}+  # +44 20 7946 0958
      | \(\d{2,5}\)[ .-]?\d{2,5}(?:[ .-]\d{2,5}){1,3}+                          # (555) 123-4567
      | \d{2,5}[ .-]\d{2,5}(?:[ .-]\d{2,5}){1,3}+                               # 555-123-4567, 01 23 45 67 89
      | 0\d{2,4}[ .-]\d{5,8}+                                                   # 07700 900123
    )"""
    + _DIGITS_AFTER,
    _F,
)

CARD = regex.compile(_DIGITS_BEFORE + r"\d(?:[ -]?\d){11,18}+" + _DIGITS_AFTER, _F)

IBAN = regex.compile(
    r"(?<![\w-])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}+(?:[ ]?[A-Z0-9]{1,4})?(?![a-z0-9-])", regex.VERSION1
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = regex.compile(rf"(?<![\w.:-]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w-]|\.\d)", regex.VERSION1)
IPV6 = regex.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?"
    r"(?![\w:])",
    regex.VERSION1,
)

# Well-known token shapes: what each vendor documents as its key format.
SECRET = regex.compile(
    r"""(?<![\w-])(?:
        sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-|admin-)?[A-Za-z0-9_-]{20,}  # OpenAI, Anthropic
      | (?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}                        # Stripe
      | gh[pousr]_[A-Za-z0-9]{36,}                                         # GitHub
      | github_pat_[A-Za-z0-9_]{22,}
      | glpat-[A-Za-z0-9_-]{20,}                                           # GitLab
      | (?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}                                # AWS access key id
      | xox[abposr]-[A-Za-z0-9-]{10,}                                      # Slack
      | AIza[0-9A-Za-z_-]{35}                                              # Google API key
      | hf_[A-Za-z0-9]{30,}                                                # Hugging Face
      | npm_[A-Za-z0-9]{36}                                                # npm
      | SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}                           # SendGrid
      | eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}      # JWT
    )(?![\w-])""",
    _F,
)
PRIVATE_KEY = regex.compile(
    r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----.*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
    regex.VERSION1 | regex.DOTALL,
)
# `password = hunter2!`, `"api_key": "..."`: the value is the secret, whatever its shape.
ASSIGNED_SECRET = regex.compile(
    r"""(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?token|auth[_-]?token
        |bearer|token|password|passwd|pwd)\b["']?\s*(?:[:=]|\bis\b)\s*["']?
        (?P<value>[^\s"',;<>]{8,200})""",
    _F,
)
TOKEN = regex.compile(r"(?<![\w+/=.-])[A-Za-z0-9+/_-]{32,512}={0,2}(?![\w+/=-])", regex.VERSION1)

_STREET = (
    r"(?:(?:Street|Avenue|Road|Boulevard|Lane|Drive|Court|Way|Place|Terrace|Parkway|Circle|Square|Highway"
    r"|Close|Crescent|Gardens)\b|(?:St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Ter|Pkwy|Cir|Sq|Hwy)\b\.?)"
)
ADDRESS = regex.compile(
    rf"""(?:
        \b\d{{1,6}}[A-Za-z]?\s+(?:(?:[NSEW]|North|South|East|West)\.?\s+)?(?:[A-Z][A-Za-z'-]*\.?\s+){{1,4}}
        {_STREET}(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?
        (?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|\#)\.?\s*[\w-]{{1,6}})?
        (?:,\s*[A-Z][A-Za-z.'-]*(?:\s[A-Z][A-Za-z.'-]*){{0,3}},\s*(?:[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?
            |[A-Z]{{1,2}}\d[A-Z\d]?\s\d[A-Z]{{2}}))?
      | \b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm)\s+\d{{1,4}}[a-z]?\b
        (?:,\s*\d{{5}}\s+[A-ZÄÖÜ][\wäöüß-]+)?
      | \b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|place|chemin|allée|impasse|quai)\s+
        (?:d[eu']\s?|de\ la\s|des\s)?[A-Z][\w'’-]+(?:\s[A-Z][\w'’-]+){{0,3}}(?:,\s*\d{{5}}\s+[A-Z][\w-]+)?
    )""",
    _F,
)

# National identity numbers, each in the shapes its issuer prints; `detect` then checks the rules and
# check characters (fmops.pii.checks). Bare digit runs (a BSN, an unformatted SSN or Aadhaar) count
# only after a word naming them (NATIONAL_ID_CONTEXT): nine or twelve digits alone are anything.
US_SSN = regex.compile(_DIGITS_BEFORE + r"\d{3}(?P<sep>[- ])\d{2}(?P=sep)\d{4}" + _DIGITS_AFTER, _F)
UK_NINO = regex.compile(
    r"(?<![\w-])[A-Z]{2}(?P<sep>[ ]?)\d{2}(?P=sep)\d{2}(?P=sep)\d{2}(?P=sep)[A-D](?![\w-])", _F
)
ES_DNI = regex.compile(r"(?<![\w-])(?:\d{8}|[XYZ]-?\d{7})[- ]?[A-Z](?![\w-])", _F)
IN_AADHAAR = regex.compile(_DIGITS_BEFORE + r"[2-9]\d{3}(?P<sep>[ -])\d{4}(?P=sep)\d{4}" + _DIGITS_AFTER, _F)
BARE_ID = regex.compile(_DIGITS_BEFORE + r"(?:\d{4}\.\d{2}\.\d{3}|\d{9}|\d{12})" + _DIGITS_AFTER, _F)
# The words that name a national ID, right before the number ("SSN:", "my BSN is", "Aadhaar no."):
# they make a bare digit run an ID, and make any number after them an ID rather than a phone.
NATIONAL_ID_CONTEXT = regex.compile(
    r"""(?i)\b(?:(?P<ssn>ssn|social\s+security(?:\s+number)?)
        |(?P<bsn>bsn|burgerservicenummer|sofi(?:nummer)?)
        |(?P<aadhaar>aadhaa?r|uidai|uid)
        |(?P<other>nino|ni\s+number|national\s+insurance(?:\s+number)?|dni|nie|documento|passport|id\s+number))
        (?:\s*(?:no\.?|number|num|\#))?\s*[:#]?\s*(?:is\s+)?$""",
    _F,
)

# A number right after one of these words is an identifier, not a phone or a card ("Order #...").
ID_CONTEXT = regex.compile(
    r"""(?i)\b(?:order|invoice|ref|reference|tracking|ticket|account|acct|sku|serial|case|confirmation
        |booking|transaction|parcel|shipment|part|model|isbn|version|build|member|policy|batch|lot)
        (?:\s*(?:no\.?|number|num|id|code))?\s*[:#]?\s*$""",
    _F,
)
