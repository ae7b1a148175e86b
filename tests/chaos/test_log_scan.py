"""No phone number in any log the test session's processes wrote.

Every Stack of the session (the end-to-end servers and services, the
integration stacks, the chaos run) writes each child's output to
`<workdir>/logs/<name>.log`. This test runs last (see conftest.py) and reads
all of them: a citizen's number must never appear, in any format.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

# +62 / 62 / 0, then a mobile prefix 8xx and the rest, with optional spaces or
# dashes: +6281234567890, 6281234567890, 081234567890, +62 812-3456-7890.
PHONE = re.compile(r"(?<![\w.+])(?:\+62|62|0)[ -]?8\d{2}(?:[ -]?\d){6,10}(?![\d])")


def find_phone_numbers(text: str) -> list[str]:
    return [m.group(0) for m in PHONE.finditer(text)]


@pytest.mark.parametrize(
    "line",
    [
        "sms from +6281234567890 stored",
        '"reply_to": "6281234567890"',
        "call 081234567890 now",
        "nomor +62 812-3456-7890",
        "to=0812 3456 7890",
    ],
)
def test_the_pattern_catches_phone_numbers(line: str) -> None:
    assert find_phone_numbers(line)


@pytest.mark.parametrize(
    "line",
    [
        "sender +628**** masked",
        '"ts": "2026-11-28T08:12:34.567+00:00"',
        "stream_seq 1762812345678 id LPR-Q0V8-38PE1",
        "nuid X6281234567890abc",
        "took 0.0812345678 s",
    ],
)
def test_the_pattern_spares_other_numbers(line: str) -> None:
    assert not find_phone_numbers(line)


def test_no_log_of_the_session_holds_a_phone_number(workdir: Path) -> None:
    logs = sorted(workdir.rglob("logs/*.log"))
    if not logs:
        pytest.skip("no process logs in this session (run with the e2e or chaos tests)")
    found = []
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            for hit in find_phone_numbers(line):
                # Report where, never the number itself.
                found.append(f"{log.relative_to(workdir)}:{number}: {hit[:5]}…")
    print(f"scanned {len(logs)} logs, {sum(p.stat().st_size for p in logs)} bytes")
    assert not found, "phone numbers in logs:\n" + "\n".join(found[:50])
