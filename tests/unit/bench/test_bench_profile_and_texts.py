"""py-spy summaries and the generated SMS traffic."""

from __future__ import annotations

import random
import re

from bench.profile import summarize_collapsed
from bench.texts import SUBJECTS, complaint_text, sender_number

MAIN = "<module> (services/intake/__main__.py:3)"
PYMONGO = "/x/.venv/lib/python3.11/site-packages/pymongo/asynchronous/collection.py"
COLLAPSED = "\n".join(
    [
        f"{MAIN};run (asyncio/runners.py:190);find_one ({PYMONGO}:1745) 6",
        f"{MAIN};handle_sms (/work/main/services/intake/handlers.py:75);"
        "loads (/usr/lib/python3.11/json/__init__.py:346) 3",
        f"{MAIN};select (/usr/lib/python3.11/selectors.py:468) 1",
        "not a sample line",
    ]
)


def test_collapsed_stacks_give_self_time_packages_and_our_code() -> None:
    summary = summarize_collapsed(COLLAPSED)
    assert summary["samples"] == 10
    assert summary["self"][0] == ["find_one (pymongo/asynchronous/collection.py)", 60.0]
    assert ["pymongo", 60.0] in summary["self_by_package"]
    assert ["json", 30.0] in summary["self_by_package"]
    assert ["handle_sms (services/intake/handlers.py)", 30.0] in summary["own_code_inclusive"]


def test_empty_profile() -> None:
    assert summarize_collapsed("")["samples"] == 0


def test_every_sms_has_its_own_valid_looking_number() -> None:
    numbers = {sender_number(i, run) for run in (1, 9, 40) for i in range(2000)}
    assert len(numbers) == 6000
    assert all(re.fullmatch(r"\+628[0-9]{9,10}", n) for n in numbers)


def test_texts_carry_the_region_keyword_and_name_several_agencies() -> None:
    rng = random.Random(1)
    drawn = [complaint_text(rng) for _ in range(500)]
    assert all(text.upper().startswith("BANJAR") for text, _ in drawn)
    assert len({agency for _, agency in drawn}) >= 10
    assert {agency for _, agency in drawn} <= set(SUBJECTS)
    assert len({text for text, _ in drawn}) > 300
