"""Accuracy of the router on a labelled corpus of Banjar complaints.

Run with `-s` to see the figures. Agency accuracy counts a triage decision as
not correct; the triage rate is reported on its own. Items whose `origin` names
a holdout batch were moved into dev after that batch had been measured once.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from lapor.contracts import AGENCY_OUT_OF_SCOPE, Priority
from lapor.directory import REGIONS_DIR
from services.router.domain import Decision, Router

CORPUS = Path(__file__).resolve().parents[2] / "data" / "router_corpus_banjar.jsonl"
SPLITS = ("dev", "holdout")


@dataclass
class Figures:
    name: str
    total: int = 0
    correct: int = 0
    triage: int = 0
    urgent_hits: int = 0
    urgent_false: int = 0
    urgent_missed: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    def add(self, row: dict[str, str], decision: Decision) -> None:
        self.total += 1
        self.triage += decision.triage
        if not decision.triage and decision.agency == row["agency"]:
            self.correct += 1
        else:
            got = "triage " + "/".join(decision.candidates) if decision.triage else decision.agency
            self.wrong.append(f"{row['agency']} <- {got}: {row['text'][:90]}")
        said_urgent = decision.priority is Priority.URGENT
        if row["priority"] == Priority.URGENT:
            if said_urgent:
                self.urgent_hits += 1
            else:
                self.urgent_missed.append(row["text"])
        elif said_urgent:
            self.urgent_false += 1

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    @property
    def urgent_recall(self) -> float:
        expected = self.urgent_hits + len(self.urgent_missed)
        return self.urgent_hits / expected if expected else 1.0

    @property
    def urgent_precision(self) -> float:
        said = self.urgent_hits + self.urgent_false
        return self.urgent_hits / said if said else 1.0

    def line(self) -> str:
        return (
            f"{self.name:<24} n={self.total:<4} accuracy {self.accuracy:6.1%}  "
            f"triage {self.triage / self.total:5.1%}  urgent recall {self.urgent_recall:6.1%} "
            f"precision {self.urgent_precision:6.1%} "
            f"(hit {self.urgent_hits}, missed {len(self.urgent_missed)}, false {self.urgent_false})"
        )


@cache
def rows() -> tuple[dict[str, str], ...]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


@cache
def figures() -> dict[str, Figures]:
    router = Router.load(REGIONS_DIR / "banjar")
    result: dict[str, Figures] = {}
    for row in rows():
        decision = router.decide(row["text"])
        groups = ["overall", row["split"]]
        if row.get("origin"):
            groups.append(f"  {row['split']} from {row['origin']}")
        for group in groups:
            result.setdefault(group, Figures(group)).add(row, decision)
    return result


def test_corpus_is_well_formed() -> None:
    directory_codes = set(Router.load(REGIONS_DIR / "banjar").directory.codes)
    data = rows()
    assert len(data) >= 220
    for row in data:
        assert {"text", "agency", "priority", "split"} <= set(row), row
        assert row["agency"] in directory_codes, row
        assert row["priority"] in set(Priority), row
        assert row["split"] in SPLITS, row
        assert row["text"].strip(), row
    texts = [row["text"] for row in data]
    assert len(texts) == len(set(texts)), "duplicate texts"

    per_agency = Counter(row["agency"] for row in data)
    assert set(per_agency) == directory_codes
    assert min(per_agency.values()) >= 6, per_agency
    priorities = Counter(row["priority"] for row in data)
    assert priorities[Priority.URGENT] >= 35
    assert priorities[Priority.HIGH] >= 10
    assert per_agency[AGENCY_OUT_OF_SCOPE] >= 6
    holdout = sum(row["split"] == "holdout" for row in data) / len(data)
    assert 0.25 <= holdout <= 0.40, f"holdout share {holdout:.0%}"


def test_report() -> None:
    result = figures()
    print("\nrouter corpus (triage counts as not correct):")
    for name in ("overall", "dev", "holdout"):
        print("  " + result[name].line())
    for name in sorted(n for n in result if n.startswith("  ")):
        print("  " + result[name].line())
    for name in ("dev", "holdout"):
        print(f"  {name} misses:")
        for miss in result[name].wrong:
            print(f"    {miss}")
        for text in result[name].urgent_missed:
            print(f"    URGENT MISSED: {text}")


@pytest.mark.parametrize("name", ["dev", "overall"])
def test_accuracy_and_urgency_thresholds(name: str) -> None:
    result = figures()[name]
    assert result.accuracy >= 0.95, result.line() + "\n" + "\n".join(result.wrong)
    assert result.urgent_recall == 1.0, f"urgent missed: {result.urgent_missed}"
    assert result.urgent_precision >= 0.90, result.line()


def test_holdout_thresholds() -> None:
    result = figures()["holdout"]
    assert result.accuracy >= 0.85, result.line() + "\n" + "\n".join(result.wrong)
    assert result.urgent_recall == 1.0, f"urgent missed: {result.urgent_missed}"
