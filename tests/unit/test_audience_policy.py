"""Who sees what: the README's table is the policy the code applies, and the masking
of phone numbers and e-mail addresses in every text a public view shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lapor.audience import (
    MASKED_EMAIL,
    POLICY,
    Access,
    Audience,
    access,
    markdown_table,
    mask_contacts,
    reveal,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_policy() -> None:
    text = README.read_text("utf-8")
    found = re.search(
        r"<!-- audience-table:start -->\n(.*?)\n<!-- audience-table:end -->", text, re.S
    )
    assert found, "README.md lost its 'Who sees what' table markers"
    assert found.group(1).strip() == markdown_table().strip(), (
        "README's 'Who sees what' differs from lapor.audience.POLICY: paste markdown_table()"
    )


def test_every_part_names_every_audience_once() -> None:
    assert len({p.key for p in POLICY}) == len(POLICY)
    for part in POLICY:
        assert set(part.access) == set(Audience), part.key


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("hubungi 081234567890 ya", "hubungi +62 ••• ••• 890 ya"),
        ("wa: 0812-3456-7890.", "wa: +62 ••• ••• 890."),
        ("+62 812 3456 7890", "+62 ••• ••• 890"),
        ("nomor 6281234567890", "nomor +62 ••• ••• 890"),
        ("kantor (0511) 4772 123", "kantor +62 ••• ••• 123"),
        ("call +1 202-555-0147 now", "call +1 ••• ••• 147 now"),
        ("mail budi.s+lapor@gmail.co.id!", f"mail {MASKED_EMAIL}!"),
        ("081234567890 / budi@x.id", f"+62 ••• ••• 890 / {MASKED_EMAIL}"),
    ],
)
def test_phone_numbers_and_email_addresses_are_masked(text: str, masked: str) -> None:
    assert mask_contacts(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "Jalan berlubang di RT 03 RW 05 no 12 sejak 2026-11-01 jam 10",
        "NIK 6303012345678901 tidak terbaca, laporan LPR-7K3M-9QX2T",
        "air mati 3 hari, 120 rumah",
        "",
    ],
)
def test_other_numbers_stay_readable(text: str) -> None:
    assert mask_contacts(text) == text


def test_reveal_follows_the_cells() -> None:
    phone_text = "rumah saya 081234567890"
    assert reveal(Audience.PUBLIC, "text", phone_text) == "rumah saya +62 ••• ••• 890"
    assert reveal(Audience.AGENCY, "text", phone_text) == phone_text
    assert reveal(Audience.PUBLIC, "question", "kapan?") is None
    assert reveal(Audience.PUBLIC, "coordinates", -3.3, anonymous=True) is None
    assert reveal(Audience.PUBLIC, "coordinates", -3.3) == -3.3
    assert reveal(Audience.AGENCY, "reporter_name", "Budi", anonymous=True) is None
    assert access(Audience.OTHER_AGENCY, "confidential") is Access.NONE


def test_any_text_can_be_masked() -> None:
    # A lone surrogate (a Python str may hold one) keeps its place and breaks nothing.
    assert mask_contacts("a\ud800 081234567890") == "a\ud800 +62 ••• ••• 890"
