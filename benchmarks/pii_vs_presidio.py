"""PII detection: fmops.pii against Microsoft Presidio's analyzer (its predefined recognizers, offline),
on a labelled set this script generates: per type precision and recall, and documents/s.

The set mixes each type in the formats people write (US, UK, German, French, Indian and E.164 phone
numbers; cards of five issuers grouped, dashed or run together; IBANs of six countries, grouped or
compact; IPv4 and IPv6; vendor keys, assigned passwords and private-key blocks; US, UK, German and
French street addresses) with near-misses that must not match: order, invoice, tracking and ISBN
numbers, dates, times, versions, amounts, zip codes, hashes, UUIDs, cards failing Luhn, IBANs failing
mod 97, impossible IPs. A finding counts when its type matches a labelled span it overlaps.

Presidio runs without a spaCy model download: its NLP engine is a blank spaCy English pipeline
(tokens only), so its context words and NER-based recognizers add nothing; its pattern recognizers
(and phonenumbers for phones) do the work. It has no recognizer for API keys or street addresses.

    .venv/bin/python benchmarks/pii_vs_presidio.py [--docs 10000] [--presidio-docs 10000]

Raw figures: benchmarks/results/pii_vs_presidio.json.
"""

from __future__ import annotations

import argparse
import logging
import random
import string
import time
from collections import Counter
from dataclasses import dataclass, field

from _harness import load, save_result

from fmops.pii import PiiType, detect
from fmops.pii.checks import IBAN_LENGTHS

TYPES = [t.value for t in PiiType]
STRUCTURED = ["email", "phone", "credit_card", "iban", "ip_address", "secret"]
PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip_address",
}


@dataclass
class Doc:
    text: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)


# --- values ---------------------------------------------------------------------------------------


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def luhn_complete(prefix_and_body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(prefix_and_body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix_and_body + str((10 - total % 10) % 10)


def bad_luhn(rng: random.Random) -> str:
    number = luhn_complete("4" + digits(rng, 14))
    return number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)


def card(rng: random.Random) -> str:
    issuer = rng.choice(["visa", "mc", "mc2", "amex", "discover"])
    if issuer == "amex":
        number = luhn_complete(rng.choice(["34", "37"]) + digits(rng, 12))
        return rng.choice(
            [
                f"{number[:4]} {number[4:10]} {number[10:]}",
                number,
                f"{number[:4]}-{number[4:10]}-{number[10:]}",
            ]
        )
    prefix = {
        "visa": "4",
        "mc": str(rng.randint(51, 55)),
        "mc2": str(rng.randint(2221, 2720)),
        "discover": "6011",
    }[issuer]
    number = luhn_complete(prefix + digits(rng, 15 - len(prefix)))
    groups = [number[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice([" ".join(groups), "-".join(groups), number])


def iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(["DE", "GB", "FR", "NL", "ES", "IT"])
    length = IBAN_LENGTHS[country]
    if country == "GB" or country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + digits(rng, length - 8)
    elif country == "IT":
        bban = rng.choice(string.ascii_uppercase) + digits(rng, length - 5)
    else:
        bban = digits(rng, length - 4)
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    check = 98 - number % 97
    if not valid:
        check = (check % 97) + 1
    compact = f"{country}{check:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4)) if rng.random() < 0.6 else compact


def phone(rng: random.Random) -> str:
    a = str(rng.randint(2, 9)) + digits(rng, 2)
    x = str(rng.randint(2, 9)) + digits(rng, 2)
    line = digits(rng, 4)
    return rng.choice(
        [
            f"({a}) {x}-{line}",
            f"{a}-{x}-{line}",
            f"{a}.{x}.{line}",
            f"+1 {a} {x} {line}",
            f"+1-{a}-{x}-{line}",
            f"+1{a}{x}{line}",
            f"+44 20 {rng.randint(7000, 8999)} {digits(rng, 4)}",
            f"020 {rng.randint(7000, 8999)} {digits(rng, 4)}",
            f"07{rng.randint(400, 999)} {digits(rng, 6)}",
            f"+44 7{rng.randint(400, 999)} {digits(rng, 6)}",
            f"+49 30 {digits(rng, 8)}",
            f"+49 151 {digits(rng, 8)}",
            f"030 {digits(rng, 8)}",
            f"+33 {rng.randint(1, 9)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
            f"0{rng.randint(1, 9)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
            f"+91 9{digits(rng, 4)} {digits(rng, 5)}",
        ]
    )


FIRST = ["ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances", "john"]
LAST = ["lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "liskov", "ritchie", "allen"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "uni-example.edu", "example.io"]


def email(rng: random.Random) -> str:
    user = rng.choice(
        [
            f"{rng.choice(FIRST)}.{rng.choice(LAST)}",
            f"{rng.choice(FIRST)}{rng.randint(1, 99)}",
            f"{rng.choice(FIRST)}+news@",
            f"{rng.choice(FIRST)[0]}_{rng.choice(LAST)}",
        ]
    ).rstrip("@")
    address = f"{user}@{rng.choice(DOMAINS)}"
    return address.upper() if rng.random() < 0.1 else address


def ip(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return ".".join(str(rng.randint(1 if i == 0 else 0, 255)) for i in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return f"2001:db8:{groups[2]}::{groups[5]}:{groups[7]}"


def token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        out = "".join(rng.choice(alphabet) for _ in range(n))
        if any(c.isupper() for c in out) and any(c.islower() for c in out) and any(c.isdigit() for c in out):
            return out


def secret(rng: random.Random) -> tuple[str, str, str]:
    """(text before, the secret, text after): some secrets are only secrets because of what precedes them."""
    kind = rng.randrange(9)
    if kind == 0:
        return "", "sk-proj-" + token(rng, 40, string.ascii_letters + string.digits + "_-"), ""
    if kind == 1:
        return "", "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)), ""
    if kind == 2:
        return "", "ghp_" + token(rng, 36), ""
    if kind == 3:
        return "", f"xoxb-{digits(rng, 12)}-{digits(rng, 13)}-{token(rng, 24)}", ""
    if kind == 4:
        return "", "AIza" + token(rng, 35, string.ascii_letters + string.digits + "_-"), ""
    if kind == 5:
        return "", "sk_live_" + token(rng, 24), ""
    if kind == 6:
        return rng.choice(["password: ", "PASSWORD=", 'api_key = "', "token: "]), token(rng, 14) + "!", ""
    if kind == 7:
        return "auth header value ", token(rng, 40), ""
    body = "\n".join(token(rng, 64, string.ascii_letters + string.digits + "+/") for _ in range(3))
    return "", f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----", ""


STREETS = ["Main", "Oak", "Maple", "Cedar", "Elm", "Washington", "Lake View", "Park"]
SUFFIX = ["Street", "St.", "Avenue", "Ave", "Road", "Boulevard", "Lane", "Drive"]
CITIES = [("Springfield", "IL", "62704"), ("Portland", "OR", "97201"), ("Austin", "TX", "78701")]


def address(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        city, state, zip_code = rng.choice(CITIES)
        return (
            f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIX)}, {city}, {state} {zip_code}"
        )
    if kind == 1:
        return f"{rng.randint(1, 999)} {rng.choice(STREETS)} {rng.choice(SUFFIX)}"
    if kind == 2:
        street = rng.choice(["Bahnhof", "Haupt", "Linden", "Goethe"])
        return f"{street}straße {rng.randint(1, 200)}, {digits(rng, 5)} Berlin"
    street = rng.choice(["de la Paix", "Victor Hugo", "du Bac"])
    return f"{rng.randint(1, 99)} rue {street}, 750{rng.randint(10, 20)} Paris"


MAKERS = {
    "email": email,
    "phone": phone,
    "credit_card": card,
    "iban": iban,
    "ip_address": ip,
    "address": address,
}


def near_miss(rng: random.Random) -> str:
    return rng.choice(
        [
            lambda: f"Order #{digits(rng, 9)} has shipped",
            lambda: f"order no. {rng.randint(200, 999)}-{digits(rng, 3)}-{digits(rng, 4)} is packed",
            lambda: f"Order {luhn_complete('4' + digits(rng, 14))} was refunded",
            lambda: f"invoice INV-2024-{digits(rng, 6)} is due",
            lambda: f"tracking number 1Z{digits(rng, 3)}AA{digits(rng, 10)}",
            lambda: f"ISBN 978-3-{digits(rng, 2)}-{digits(rng, 6)}-{rng.randint(0, 9)}",
            lambda: f"on {rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            lambda: f"on {rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2000, 2030)}",
            lambda: f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
            lambda: f"version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}",
            lambda: f"costs ${rng.randint(1, 999)},{digits(rng, 3)}.{digits(rng, 2)}",
            lambda: f"zip {digits(rng, 5)}-{digits(rng, 4)}",
            lambda: f"commit {''.join(rng.choice('0123456789abcdef') for _ in range(40))}",
            lambda: f"request id 550e8400-e29b-41d4-a716-{digits(rng, 12)}",
            lambda: f"card {bad_luhn(rng)} declined",
            lambda: f"account {iban(rng, valid=False)} (typo)",
            lambda: f"host {rng.randint(256, 999)}." + ".".join(str(rng.randint(0, 255)) for _ in range(3)),
            lambda: f"reference {digits(rng, 12)}",
            lambda: f"population {rng.randint(1, 9)} {digits(rng, 3)} {digits(rng, 3)}",
        ]
    )()


FILLER = [
    "Thanks for getting back to me so quickly.",
    "Could you please update my details?",
    "The meeting moved to next week.",
    "I'm writing about the issue we discussed.",
    "Let me know if anything else is needed.",
    "Our team will follow up shortly.",
]


def generate(n: int, seed: int) -> list[Doc]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        doc = Doc("")
        parts: list[str] = []

        def add(
            text: str, label: str | None = None, before: str = "", doc: Doc = doc, parts: list[str] = parts
        ) -> None:
            prefix = " ".join(parts) + (" " if parts else "") + before
            if label is not None:
                doc.spans.append((label, len(prefix), len(prefix) + len(text)))
            parts.append(before + text)

        for _ in range(rng.randint(0, 2)):
            add(rng.choice(FILLER))
            kind = rng.choice([*MAKERS, "secret"])
            if kind == "secret":
                before, value, _ = secret(rng)
                add(value, "secret", before=before)
            else:
                lead = rng.choice(["Contact:", "Details:", "Use", "It is", "Send to"])
                add(lead)
                add(MAKERS[kind](rng), kind)
        for _ in range(rng.randint(0, 2)):
            add(near_miss(rng))
        add(rng.choice(FILLER))
        doc.text = " ".join(parts)
        docs.append(doc)
    return docs


# --- scoring --------------------------------------------------------------------------------------


@dataclass
class Scores:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    fp_examples: dict[str, list[str]] = field(default_factory=dict)
    fn_examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, doc: Doc, found: list[tuple[str, int, int]], types: set[str]) -> None:
        gold = [s for s in doc.spans if s[0] in types]
        matched = set()
        for kind, start, end in found:
            hit = next(
                (
                    i
                    for i, (k, s, e) in enumerate(gold)
                    if k == kind and s < end and start < e and i not in matched
                ),
                None,
            )
            if hit is None:
                self.fp[kind] += 1
                self.fp_examples.setdefault(kind, []).append(doc.text[max(0, start - 20) : end + 20])
            else:
                matched.add(hit)
                self.tp[kind] += 1
        for i, (kind, start, end) in enumerate(gold):
            if i not in matched:
                self.fn[kind] += 1
                self.fn_examples.setdefault(kind, []).append(doc.text[start:end])

    def table(self, types: list[str]) -> dict[str, dict[str, float | int]]:
        out = {}
        for t in types:
            tp, fp, fn = self.tp[t], self.fp[t], self.fn[t]
            out[t] = {
                "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
                "tp": tp,
                "fp": fp,
                "fn": fn,
            }
        return out


def run_fmops(docs: list[Doc]) -> tuple[Scores, float]:
    scores = Scores()
    began = time.perf_counter()
    found = [detect(d.text) for d in docs]
    elapsed = time.perf_counter() - began
    for doc, findings in zip(docs, found, strict=True):
        scores.add(doc, [(f.type.value, f.start, f.end) for f in findings], set(TYPES))
    return scores, len(docs) / elapsed


def presidio_analyzer() -> object:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # it tries to refresh its list online

    class BlankSpacy(SpacyNlpEngine):  # tokens only: no model download
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankSpacy(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


def run_presidio(docs: list[Doc]) -> tuple[Scores, float, list[str]]:
    analyzer = presidio_analyzer()
    entities = list(PRESIDIO_TYPES)
    analyzer.analyze("warm up ada@example.com", language="en", entities=entities)  # type: ignore[attr-defined]
    scores = Scores()
    began = time.perf_counter()
    results = [analyzer.analyze(d.text, language="en", entities=entities) for d in docs]  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - began
    for doc, found in zip(docs, results, strict=True):
        spans = [(PRESIDIO_TYPES[r.entity_type], r.start, r.end) for r in found]
        scores.add(doc, spans, set(PRESIDIO_TYPES.values()))
    recognizers = sorted({r.name for r in analyzer.registry.recognizers})  # type: ignore[attr-defined]
    return scores, len(docs) / elapsed, recognizers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--presidio-docs", type=int, default=10_000, help="0 to skip Presidio")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    before = load()
    docs = generate(args.docs, args.seed)
    labelled = Counter(k for d in docs for k, _, _ in d.spans)
    print(f"{len(docs):,} documents, {sum(labelled.values()):,} labelled spans: {dict(labelled)}")
    ours, ours_rate = run_fmops(docs)
    results: dict[str, object] = {
        "docs": len(docs),
        "labelled": dict(labelled),
        "fmops": {
            "docs_per_s": round(ours_rate),
            "scores": ours.table(TYPES),
            "fp_examples": {k: v[:10] for k, v in ours.fp_examples.items()},
            "fn_examples": {k: v[:10] for k, v in ours.fn_examples.items()},
        },
    }
    print(f"\nfmops.pii: {ours_rate:,.0f} documents/s")
    for t, s in ours.table(TYPES).items():
        print(
            f"  {t:<12} precision {s['precision']:.3f}  recall {s['recall']:.3f}"
            f"  (tp {s['tp']}, fp {s['fp']}, fn {s['fn']})"
        )
    if args.presidio_docs:
        subset = docs[: args.presidio_docs]
        try:
            theirs, theirs_rate, recognizers = run_presidio(subset)
        except Exception as exc:  # report ours alone, and why
            results["presidio"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"\npresidio could not run: {exc}")
        else:
            shown = list(PRESIDIO_TYPES.values())
            ours_subset, ours_subset_rate = run_fmops(subset)
            results["presidio"] = {
                "docs": len(subset),
                "docs_per_s": round(theirs_rate),
                "recognizers": recognizers,
                "scores": theirs.table(shown),
                "fp_examples": {k: v[:10] for k, v in theirs.fp_examples.items()},
                "fn_examples": {k: v[:10] for k, v in theirs.fn_examples.items()},
                "fmops_on_same_docs": {
                    "docs_per_s": round(ours_subset_rate),
                    "scores": ours_subset.table(shown),
                },
            }
            print(
                f"\npresidio analyzer (predefined recognizers, blank spaCy): {theirs_rate:,.0f} documents/s "
                f"on {len(subset):,} documents; fmops {ours_subset_rate:,.0f}"
                f" ({ours_subset_rate / theirs_rate:.1f}x)"
            )
            for t, s in theirs.table(shown).items():
                o = ours_subset.table(shown)[t]
                print(
                    f"  {t:<12} precision {s['precision']:.3f} (fmops {o['precision']:.3f})  "
                    f"recall {s['recall']:.3f} (fmops {o['recall']:.3f})"
                )
    save_result("pii_vs_presidio", results, load_before=before)


if __name__ == "__main__":
    main()
