"""Pure routing: which agency handles a complaint, in which category, how urgent.

No I/O beyond loading the region data once. Every agency in the directory is
scored against the normalised text; a confident winner is assigned, a weak or
contested result goes to triage with its candidates. Priority comes from the
lexicon's urgency rules and never depends on who wins, so an urgent complaint
stays urgent even when its agency is unclear.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lapor.contracts import AGENCY_OUT_OF_SCOPE, Priority
from lapor.directory import AgencyDirectory, DirectoryError, load_directory
from services.router.matching import (
    PHRASE_WEIGHT_PER_WORD,
    WEIGHTS,
    Hit,
    PhraseIndex,
    Scan,
    Term,
    Tier,
    tile,
    unique_terms,
)
from services.router.text import (
    Lexicon,
    Normalizer,
    UrgencyRule,
    load_lexicon,
    raw_words,
)

UNCLASSIFIED = "belum_terklasifikasi"
_NEUTRAL = ""

# What makes a complaint urgent is what it is about: "anak dicabuli guru" is a
# child-protection case at a school, not a school case.
URGENT_SUBJECT_BOOST = 1.5
# A fired urgent rule with a known responder counts like one keyword for it.
RULE_HINT_WEIGHT = 1.0
# A trigger this close after a hypothetical marker ("kalau ada kebakaran",
# "rawan banjir") describes a risk, not an event.
HYPOTHETICAL_REACH = 3
# Extra content words allowed between the words of a phrase.
PHRASE_GAP = 1
URGENCY_GAP = 3
ANYWHERE = 1_000_000
# Below this confidence a human decides.
TRIAGE_BELOW = 0.5
# strength = score / (score + STRENGTH_HALF): one weak word is never enough.
STRENGTH_HALF = 0.5
MAX_CANDIDATES = 3
# As many as ComplaintRouted.keywords holds.
MAX_KEYWORDS = 64


@dataclass(frozen=True)
class Decision:
    agency: str | None
    priority: Priority
    category: str
    confidence: float
    triage: bool
    candidates: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    guidance: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "agency": self.agency,
            "priority": self.priority.value,
            "category": self.category,
            "confidence": self.confidence,
            "triage": self.triage,
            "candidates": list(self.candidates),
            "reasons": list(self.reasons),
            "guidance": self.guidance,
        }


@dataclass(frozen=True)
class _CompiledRule:
    rule: UrgencyRule
    when: PhraseIndex
    with_: PhraseIndex | None


@dataclass(frozen=True)
class _Fired:
    rule: UrgencyRule
    triggers: list[Hit]


class Router:
    """Routes complaint texts for one region. Build once with `Router.load`."""

    def __init__(self, directory: AgencyDirectory, lexicon: Lexicon) -> None:
        self.directory = directory
        self.lexicon = lexicon
        raw_terms = list(_directory_terms(directory))
        self.normalizer = Normalizer(lexicon, _vocabulary(lexicon, [t for *_, t in raw_terms]))
        self._single: dict[str, list[Term]] = defaultdict(list)
        self._single_weight: dict[tuple[str, str], float] = {}
        phrases: list[Term] = []
        for term in unique_terms(
            Term(agency, category, tier, text, self.normalizer.term(text))
            for agency, category, tier, text in raw_terms
        ):
            if len(term.stems) > 1:
                phrases.append(term)
                continue
            self._single[term.stems[0]].append(term)
            key = (term.agency, term.stems[0])
            self._single_weight[key] = max(self._single_weight.get(key, 0.0), term.weight)
        self._phrases = PhraseIndex(phrases, PHRASE_GAP)
        neutral = (self._term(_NEUTRAL, _NEUTRAL, text) for text in lexicon.neutral)
        self._neutral = PhraseIndex([t for t in neutral if len(t.stems) > 1], gap=0)
        self._rules = [self._compile(rule) for rule in lexicon.urgency]
        for rule in lexicon.urgency:
            if rule.agency is not None and rule.agency not in directory:
                raise DirectoryError(
                    f"lexicon urgency rule {rule.name!r}: unknown agency {rule.agency!r}"
                )

    @classmethod
    def load(cls, region_dir: Path) -> Router:
        return cls(load_directory(region_dir), load_lexicon(region_dir))

    def keywords(self, text: str, leave_out: Iterable[str] = ()) -> list[str]:
        """The stems of the text's content words in order, for comparing complaints
        with each other: stopwords, single letters and the words of `leave_out`
        (names of the place the text is about) are dropped."""
        normalized = self.normalizer.normalize(text)
        dropped = {s for phrase in leave_out for s in self.normalizer.normalize(phrase).stems}
        dropped |= {w for phrase in leave_out for w in self.normalizer.normalize(phrase).words}
        return [
            stem
            for word, stem in zip(normalized.words, normalized.stems, strict=True)
            if len(stem) > 1
            and not self.normalizer.is_stopword(word)
            and word not in dropped
            and stem not in dropped
        ][:MAX_KEYWORDS]

    def decide(self, text: str, exclude: frozenset[str] = frozenset()) -> Decision:
        """Route one complaint. `exclude` holds agencies that already refused it."""
        scan = Scan.of(self.normalizer.normalize(text))
        priority, fired, reasons = self._priority(scan)
        urgent_tokens = frozenset(
            i
            for f in fired
            if f.rule.level is Priority.URGENT
            for hit in f.triggers
            for i in hit.tokens
        )
        hits = [
            hit
            for hit in (*self._hits(scan, urgent_tokens), *self._rule_hints(fired))
            if hit.term.agency not in exclude
        ]
        reasons += [f"read '{typed}' as '{meant}'" for typed, meant in scan.text.corrections]
        if exclude:
            reasons.append(f"excluded (already refused): {', '.join(sorted(exclude))}")
        scores: dict[str, float] = defaultdict(float)
        for hit in hits:
            scores[hit.term.agency] += hit.score
        if not scores:
            reasons.append("no agency vocabulary found: manual triage")
            return Decision(None, priority, UNCLASSIFIED, 0.0, True, [], reasons)
        ranked = sorted(scores, key=lambda code: (-scores[code], self.directory.codes.index(code)))
        return self._verdict(ranked, scores, hits, priority, reasons)

    # agency scoring -------------------------------------------------------

    def _hits(self, scan: Scan, urgent_tokens: frozenset[int]) -> list[Hit]:
        # Neutral expressions take part in tiling only when written exactly, then drop out.
        neutral = [h for h in self._neutral.find(scan) if h.in_order and h.span == len(h.tokens)]
        tiled = tile([*self._phrases.find(scan), *neutral])
        covered = frozenset().union(*(h.tokens for h in tiled))
        hits = [self._score_phrase(scan, h) for h in tiled if h.term.agency != _NEUTRAL]
        # Repeating a word does not make a complaint more about that subject, also
        # when the first occurrence was read inside a phrase ("jalan gang, gang2 kecil").
        in_phrases = {(h.term.agency, scan.text.stems[i]) for h in tiled for i in h.tokens}
        seen: set[tuple[str, str, str]] = set()
        for index, stem in enumerate(scan.text.stems):
            if index in covered or self.normalizer.is_stopword(scan.text.words[index]):
                continue
            for term in self._single.get(stem, ()):
                key = (term.agency, term.category, term.text)
                if key not in seen and (term.agency, stem) not in in_phrases:
                    seen.add(key)
                    hit = Hit(term, frozenset({index}), index in scan.typo_tokens)
                    hits.append(hit.scored(term.weight))
        return [
            replace(h, score=h.score * URGENT_SUBJECT_BOOST) if h.tokens & urgent_tokens else h
            for h in hits
        ]

    def _score_phrase(self, scan: Scan, hit: Hit) -> Hit:
        """Each word of a phrase earns at least what it would earn alone for that agency."""
        floor = WEIGHTS[Tier.ALIAS] / len(hit.tokens) if hit.term.tier is Tier.ALIAS else 0.0
        credit = sum(
            max(
                PHRASE_WEIGHT_PER_WORD,
                floor,
                self._single_weight.get((hit.term.agency, scan.text.stems[i]), 0.0),
            )
            for i in hit.tokens
        )
        return hit.scored(credit)

    def _rule_hints(self, fired: list[_Fired]) -> Iterator[Hit]:
        seen: set[str] = set()
        for f in fired:
            # Only emergencies name their responder; a high rule is just a degree of harm.
            agency = f.rule.agency
            if f.rule.level is not Priority.URGENT or agency is None or agency in seen:
                continue
            seen.add(agency)
            category = self.directory.agency(agency).categories[0].id
            term = Term(agency, category, Tier.RULE, f.rule.name, ())
            yield Hit(term, f.triggers[0].tokens, score=RULE_HINT_WEIGHT)

    def _verdict(
        self,
        ranked: list[str],
        scores: dict[str, float],
        hits: list[Hit],
        priority: Priority,
        reasons: list[str],
    ) -> Decision:
        top = ranked[0]
        second = scores[ranked[1]] if len(ranked) > 1 else 0.0
        confidence = _confidence(scores[top], second)
        candidates = ranked[:MAX_CANDIDATES]
        triage = confidence < TRIAGE_BELOW
        category = _best_category(top, hits) or self.directory.agency(top).categories[0].id
        evidence = [_evidence(code, hits) for code in (candidates if triage else [top])]
        summary = ", ".join(f"{code} {scores[code]:.1f}" for code in candidates)
        if triage:
            verdict = f"confidence {confidence:.2f} below {TRIAGE_BELOW}: triage ({summary})"
        else:
            verdict = f"confidence {confidence:.2f} ({summary})"
        guidance = None
        if top == AGENCY_OUT_OF_SCOPE and not triage:
            guidance = self.directory.agency(top).guidance_for(category)
        return Decision(
            agency=None if triage else top,
            priority=priority,
            category=category,
            confidence=confidence,
            triage=triage,
            candidates=candidates,
            reasons=[*evidence, *reasons, verdict],
            guidance=guidance,
        )

    # urgency --------------------------------------------------------------

    def _term(self, owner: str, label: str, text: str) -> Term:
        return Term(owner, label, Tier.PHRASE, text, self.normalizer.term(text))

    def _compile(self, rule: UrgencyRule) -> _CompiledRule:
        when = [self._term(rule.level.value, rule.name, t) for t in rule.when]
        with_ = [self._term(rule.level.value, rule.name, t) for t in rule.with_]
        # `with` words may be anywhere: they qualify the whole complaint.
        return _CompiledRule(
            rule,
            PhraseIndex(when, URGENCY_GAP),
            PhraseIndex(with_, ANYWHERE) if with_ else None,
        )

    def _priority(self, scan: Scan) -> tuple[Priority, list[_Fired], list[str]]:
        fired: list[_Fired] = []
        found: dict[Priority, list[str]] = defaultdict(list)
        for compiled in self._rules:
            triggers = [h for h in compiled.when.find(scan) if not self._hypothetical(scan, h)]
            if not triggers:
                continue
            detail = f"'{scan.quote(triggers[0])}'"
            if compiled.with_ is not None:
                qualifier = next(compiled.with_.find(scan), None)
                if qualifier is None:
                    continue
                detail += f" with '{scan.quote(qualifier)}'"
            found[compiled.rule.level].append(f"{compiled.rule.name} ({detail})")
            fired.append(_Fired(compiled.rule, triggers))
        # Urgent always wins: a missed urgent complaint is the costliest error.
        for level in (Priority.URGENT, Priority.HIGH):
            if found[level]:
                return level, fired, [f"{level.value}: {reason}" for reason in found[level]]
        return Priority.NORMAL, fired, ["normal: no urgency signal"]

    def _hypothetical(self, scan: Scan, hit: Hit) -> bool:
        words, positions = scan.text.words, scan.text.positions
        start = min(hit.tokens)
        reach = positions[start] - HYPOTHETICAL_REACH
        for index in range(start - 1, -1, -1):
            if positions[index] < reach:
                return False
            if words[index] in self.lexicon.hypothetical:
                return True
        return False


# --- helpers ----------------------------------------------------------------


def _directory_terms(directory: AgencyDirectory) -> Iterator[tuple[str, str, Tier, str]]:
    for agency in directory.agencies:
        for alias in agency.aliases:
            yield agency.code, agency.categories[0].id, Tier.ALIAS, alias
        for category in agency.categories:
            for tier, texts in (
                (Tier.PHRASE, category.phrases),
                (Tier.STRONG, category.strong),
                (Tier.KEYWORD, category.keywords),
                (Tier.WEAK, category.weak),
            ):
                for text in texts:
                    yield agency.code, category.id, tier, text


def _vocabulary(lexicon: Lexicon, term_texts: list[str]) -> set[str]:
    """Every word the router knows: the target set for typo correction, and
    tokens such as 'sp4n' or 'ak1' that must not be split at digits."""
    plain = Normalizer(lexicon)
    texts = [*term_texts, *(t for r in lexicon.urgency for t in (*r.when, *r.with_))]
    words = {w for text in texts for w in raw_words(text)}
    for text in texts:
        words.update(
            w for w in plain.normalize(text, correct_typos=False).words if not plain.is_stopword(w)
        )
    return words


def _confidence(top: float, second: float) -> float:
    share = top / (top + second)
    strength = top / (top + STRENGTH_HALF)
    return round(share * strength, 3)


def _best_category(agency: str, hits: list[Hit]) -> str | None:
    by_category: dict[str, float] = defaultdict(float)
    for hit in hits:
        if hit.term.agency == agency and hit.term.tier not in (Tier.ALIAS, Tier.RULE):
            by_category[hit.term.category] += hit.score
    return max(by_category, key=lambda c: by_category[c]) if by_category else None


def _evidence(agency: str, hits: list[Hit]) -> str:
    parts = [
        f"{hit.term.tier.value} '{hit.term.text}' (+{hit.score:.1f}, {hit.term.category})"
        for hit in sorted(hits, key=lambda h: -h.score)
        if hit.term.agency == agency
    ]
    return f"{agency}: " + "; ".join(parts)
