"""The PII detector: each type in the formats people write, and the near-misses that must not match."""

from __future__ import annotations

import itertools

import pytest

from fmops.pii import Finding, PiiType, detect, parse_types, redact
from fmops.pii.checks import iban_valid, luhn_valid


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type.value, text[f.start : f.end]) for f in detect(text)]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", "ada.lovelace+ml@example.co.uk"),
        ("email", "j_doe@mail-server.io"),
        ("phone", "+44 20 7946 0958"),
        ("phone", "+1 (555) 123-4567"),
        ("phone", "(555) 123-4567"),
        ("phone", "555-123-4567"),
        ("phone", "555.123.4567"),
        ("phone", "+14155552671"),
        ("phone", "0049 30 901820"),
        ("phone", "+33 1 23 45 67 89"),
        ("phone", "07700 900123"),
        ("phone", "+86 138 0013 8000"),
        ("credit_card", "4111 1111 1111 1111"),
        ("credit_card", "5500-0000-0000-0004"),
        ("credit_card", "378282246310005"),
        ("credit_card", "6011111111111117"),
        ("iban", "DE89 3704 0044 0532 0130 00"),
        ("iban", "GB82WEST12345698765432"),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
        ("ip_address", "192.168.1.20"),
        ("ip_address", "8.8.8.8"),
        ("ip_address", "2001:db8:85a3::8a2e:370:7334"),
        ("ip_address", "fe80::1ff:fe23:4567:890a"),
        ("secret", "sk-proj-abcdefghijklmnopqrstuvwxyz123456"),
        ("secret", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"),
        ("secret", "AKIAIOSFODNN7EXAMPLE"),
        ("secret", "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ12"),
        ("secret", "xoxb-123456789012-1234567890123-abcdefghijkl"),
        ("secret", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
        ("secret", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("secret", "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"),
        ("secret", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"),
        ("address", "1600 Pennsylvania Avenue NW, Washington, DC 20500"),
        ("address", "221B Baker Street"),
        ("address", "Hauptstraße 5, 10115 Berlin"),
        ("address", "12 rue de la Paix, 75002 Paris"),
    ],
)
def test_each_type_found_whole_in_a_sentence(kind: str, value: str) -> None:
    text = f"Please note: {value}. Thanks!"
    assert found(text) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "Order #4111111111111111 shipped",  # an order number that passes Luhn
        "order no. 555-123-4567 is ready",
        "Invoice 1234567890 is due",
        "tracking number: 1Z 999 AA1 0123 4567 84",
        "card 4111 1111 1111 1112 declined",  # fails Luhn
        "1234 5678 9012 3456",
        "meet on 2024-01-15 or 15.01.2024 at 12:30:45",
        "version 1.2.3.4 of the tool",
        "pi is 3.14159265358979",
        "DE89 3704 0044 0532 0130 01",  # wrong IBAN checksum
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "std::vector<int> and dead::beef",
        "256.1.1.1 is not an address",
        "user@localhost is no e-mail",
        "it costs $1,234,567.89 or 1 234 567 EUR",
        "the password is required",
        "internationalization_and_localization_framework_documentation",
        "zip 12345-6789 here",
        "zip 00206-6284 here",
        "host 674.156.87.230 is a typo",  # not an IP, and not a phone either
        "account GB21 SBYR 6305 8128 2977 46 (mod 97 fails; its tail is no card)",
        "account NL13 WFCV 9883 0998 54 (its tail is no phone)",
    ],
)
def test_near_misses_do_not_match(text: str) -> None:
    assert found(text) == []


def test_checksums() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")
    assert not iban_valid("DE8937040044053201300")  # one character short for Germany


def test_overlaps_resolved_by_the_more_specific_type() -> None:
    text = "card 4111 1111 1111 1111 and iban DE89 3704 0044 0532 0130 00"
    assert [f.type for f in detect(text)] == [PiiType.credit_card, PiiType.iban]
    spans = [(f.start, f.end) for f in detect(text)]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_private_key_block_is_one_secret() -> None:
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----"
    findings = detect(f"key:\n{block}\nend")
    assert findings == [Finding(PiiType.secret, 5, 5 + len(block), "private_key")]


def test_assigned_secret_takes_the_value_only() -> None:
    text = 'config = {"api_key": "my-weak-key-123"}'
    assert found(text) == [("secret", "my-weak-key-123")]


def test_types_filter_and_unknown_types() -> None:
    text = "ada@example.com 192.168.0.1"
    assert [f.type for f in detect(text, {PiiType.ip_address})] == [PiiType.ip_address]
    assert parse_types(["email"]) == {PiiType.email}
    with pytest.raises(ValueError, match=r"unknown PII type\(s\) mail.*known: secret"):
        parse_types(["mail"])


def test_redact_and_mask() -> None:
    text = "Mail ada@example.com, card 4111-1111-1111-1111, call +44 20 7946 0958."
    assert redact(text) == "Mail [EMAIL], card [CREDIT_CARD], call [PHONE]."
    assert redact(text, "mask") == "Mail ***@*******.***, card ****-****-****-1111, call +** ** **** ****."
    assert redact(text, "redact", {PiiType.email}) == (
        "Mail [EMAIL], card 4111-1111-1111-1111, call +44 20 7946 0958."
    )
    assert redact("nothing here") == "nothing here"


def test_pathological_input_finds_nothing() -> None:
    # Inputs that make careless patterns backtrack: digit runs with separators, colons, long tokens.
    # (The suite's per-test timeout is what catches a pattern gone exponential.)
    text = ("1 " * 50_000) + ("a:" * 50_000) + ("Ab1" * 30_000) + ("@." * 20_000)
    assert detect(text) == []
