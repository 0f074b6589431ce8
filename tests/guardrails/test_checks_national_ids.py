"""National IDs in fmops.pii (so in the `pii` guardrail and curation alike): each in its printed shapes,
and the near-misses that must not count (a failed check character, an issuer's excluded ranges, an
order number of the same shape, a bare digit run no word names)."""

from __future__ import annotations

import pytest

from fmops.guardrails.base import Context, Stage
from fmops.guardrails.registry import build
from fmops.pii import PiiType, detect
from fmops.pii.checks import es_dni_valid, in_aadhaar_valid, nl_bsn_valid, uk_nino_valid, us_ssn_valid


def ids(text: str) -> list[tuple[str, str]]:
    return [(f.detail, text[f.start : f.end]) for f in detect(text) if f.type is PiiType.national_id]


@pytest.mark.parametrize(
    ("text", "detail", "value"),
    [
        ("SSN 123-45-6789 on file", "us_ssn", "123-45-6789"),
        ("her number is 536 22 1234.", "us_ssn", "536 22 1234"),
        ("my ssn is 123456789", "us_ssn", "123456789"),
        ("NI number AB 12 34 56 C", "uk_nino", "AB 12 34 56 C"),
        ("nino: JG103759A", "uk_nino", "JG103759A"),
        ("BSN: 111222333", "nl_bsn", "111222333"),
        ("mijn burgerservicenummer is 123456782", "nl_bsn", "123456782"),
        ("DNI 12345678Z", "es_dni", "12345678Z"),
        ("DNI 12345678-Z", "es_dni", "12345678-Z"),
        ("NIE X1234567L", "es_dni", "X1234567L"),
        ("Aadhaar 2341 2341 2346", "in_aadhaar", "2341 2341 2346"),
        ("aadhaar no. 234123412346", "in_aadhaar", "234123412346"),
    ],
)
def test_each_id_in_its_shapes(text: str, detail: str, value: str) -> None:
    assert ids(text) == [(detail, value)]


@pytest.mark.parametrize(
    "text",
    [
        "SSN 000-12-3456",  # area 000 is never issued
        "SSN 666-12-3456",
        "SSN 912-12-3456",  # 9xx: ITINs, not SSNs
        "SSN 123-00-4567",
        "SSN 123-45-0000",
        "order 123-45-6789",  # the SSN's shape after an order word
        "serial 123 45 6789",
        "reference 123456789",  # nine digits no word names
        "NINO QQ123456C",  # QQ: HMRC's specimen prefix
        "NINO GB123456A",
        "NINO AB123456E",  # suffix beyond D
        "BSN 123456789",  # fails the elfproef
        "DNI 12345678A",  # wrong letter
        "SKU 12345678Z",  # the right letter, but a product code
        "Aadhaar 2341 2341 2345",  # Verhoeff fails
        "Aadhaar 1341 2341 2346",  # never starts with 0 or 1
        "batch 2341 2341 2346 passed QA",
        "version 1.2.3, on 2024-05-01 at 10:42:17",
    ],
)
def test_near_misses_do_not_count(text: str) -> None:
    assert ids(text) == []


def test_a_named_id_is_not_a_phone_or_a_card() -> None:
    assert detect("SSN 666-12-3456 was rejected") == []
    assert detect("Aadhaar 2341 2341 2345 is mistyped") == []
    # Twelve digits starting 57 with a valid Luhn sum are also a Maestro card's shape.
    assert detect("Aadhaar 5738 3450 3316 is mistyped") == []
    assert ids("Aadhaar 6722 1893 3675") == [("in_aadhaar", "6722 1893 3675")]


def test_the_checks() -> None:
    assert us_ssn_valid("123456789")
    assert not us_ssn_valid("666456789")
    assert uk_nino_valid("AB123456C")
    assert not uk_nino_valid("DA123456C")
    assert nl_bsn_valid("111222333")
    assert not nl_bsn_valid("111222334")
    assert not nl_bsn_valid("000000000")
    assert es_dni_valid("12345678Z")
    assert es_dni_valid("Y1234567X")
    assert not es_dni_valid("12345678Y")
    assert in_aadhaar_valid("234123412346")
    assert not in_aadhaar_valid("034123412346")


def test_the_pii_guardrail_redacts_them_by_default() -> None:
    text = "Customer SSN 123-45-6789, BSN 111222333."
    decision = build("pii", {}).check(text, Context(Stage.input))
    assert [text[s.start : s.end] for s in decision.spans] == ["123-45-6789", "111222333"]
    assert decision.reason == "personal data found: 2 national_id"
