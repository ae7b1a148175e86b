"""Finding a region's terms in a complaint text: the words and phrases of the
agency directory and the lexicon's urgency rules, each found term a `Hit`.

Pure: `services.router.domain` scores the hits into a decision.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import Enum

from services.router.text import NormalizedText


class Tier(Enum):
    """How strongly one matched term points to its agency."""

    PHRASE = "phrase"
    ALIAS = "alias"
    STRONG = "strong"
    KEYWORD = "keyword"
    WEAK = "weak"
    RULE = "urgency rule"


# A phrase is worth more than its words counted separately: it is the most
# specific reading of the text. Aliases and strong words name the subject.
PHRASE_WEIGHT_PER_WORD = 1.25
WEIGHTS = {Tier.ALIAS: 2.0, Tier.STRONG: 2.0, Tier.KEYWORD: 1.0, Tier.WEAK: 0.4}
TYPO_FACTOR = 0.8


@dataclass(frozen=True)
class Term:
    agency: str
    category: str
    tier: Tier
    text: str
    stems: tuple[str, ...]

    @property
    def weight(self) -> float:
        if len(self.stems) > 1:
            return max(PHRASE_WEIGHT_PER_WORD * len(self.stems), WEIGHTS.get(self.tier, 0.0))
        return WEIGHTS.get(self.tier, WEIGHTS[Tier.KEYWORD])


@dataclass(frozen=True)
class Hit:
    """One term found in one text."""

    term: Term
    tokens: frozenset[int]
    typo: bool = False
    score: float = 0.0
    # How tightly and in which order the words were found: decides between
    # overlapping phrase readings.
    span: int = 1
    in_order: bool = True

    def scored(self, score: float) -> Hit:
        return replace(self, score=score * (TYPO_FACTOR if self.typo else 1.0))


@dataclass(frozen=True)
class Scan:
    """A normalised text with the lookups every matcher needs, built once per decision."""

    text: NormalizedText
    where: dict[str, list[int]]
    typo_tokens: frozenset[int]

    @classmethod
    def of(cls, text: NormalizedText) -> Scan:
        where: dict[str, list[int]] = defaultdict(list)
        for index, stem in enumerate(text.stems):
            where[stem].append(index)
        fixed = {understood for _, understood in text.corrections}
        typos = frozenset(i for i, w in enumerate(text.words) if w in fixed)
        return cls(text, dict(where), typos)

    def quote(self, hit: Hit) -> str:
        return " ".join(self.text.words[i] for i in sorted(hit.tokens))


class PhraseIndex:
    """Finds terms (one or more stems) in a scanned text.

    Words of a multi-word term must all occur within `len(term) + gap`
    content words, in any order: Indonesian SMS say both "lampu mati" and
    "mati lampu".
    """

    def __init__(self, terms: Iterable[Term], gap: int) -> None:
        self.gap = gap
        self._by_first: dict[str, list[Term]] = defaultdict(list)
        for term in terms:
            self._by_first[term.stems[0]].append(term)

    def find(self, scan: Scan) -> Iterator[Hit]:
        for stem in self._by_first.keys() & scan.where.keys():
            for term in self._by_first[stem]:
                found = self._locate(term.stems, scan)
                if found is not None:
                    tokens, span, in_order = found
                    yield Hit(term, tokens, bool(tokens & scan.typo_tokens), 0.0, span, in_order)

    def _locate(
        self, stems: tuple[str, ...], scan: Scan
    ) -> tuple[frozenset[int], int, bool] | None:
        where, positions = scan.where, scan.text.positions
        if any(s not in where for s in stems):
            return None
        if len(stems) == 1:
            return frozenset(where[stems[0]][:1]), 1, True
        # Anchor on the rarest word and take the nearest free occurrence of each
        # other word: linear in practice, where trying every combination is not.
        anchor = min(range(len(stems)), key=lambda k: len(where[stems[k]]))
        best: tuple[int, bool, tuple[int, ...]] | None = None
        for start in where[stems[anchor]]:
            combo = self._nearest(stems, anchor, start, scan)
            if combo is None:
                continue
            spots = [positions[i] for i in combo]
            candidate = (max(spots) - min(spots) + 1, list(combo) != sorted(combo), combo)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        if best is None or best[0] > len(stems) + self.gap:
            return None
        span, reversed_order, combo = best
        return frozenset(combo), span, not reversed_order

    @staticmethod
    def _nearest(
        stems: tuple[str, ...], anchor: int, start: int, scan: Scan
    ) -> tuple[int, ...] | None:
        positions = scan.text.positions
        combo = [start] * len(stems)
        used = {start}
        for k, stem in enumerate(stems):
            if k == anchor:
                continue
            free = [i for i in scan.where[stem] if i not in used]
            if not free:
                return None
            pick = min(free, key=lambda i: (abs(positions[i] - positions[start]), abs(i - start)))
            combo[k] = pick
            used.add(pick)
        return tuple(combo)


def unique_terms(terms: Iterable[Term]) -> list[Term]:
    """One term per agency and set of stems, keeping the strongest tier:
    spellings that stem alike (berbau/bau, terkena/kena) must not count twice."""
    best: dict[tuple[str, tuple[str, ...]], Term] = {}
    for term in terms:
        if len(term.stems) == 1 and term.tier is Tier.PHRASE:
            term = replace(term, tier=Tier.KEYWORD)
        key = (term.agency, tuple(sorted(term.stems)))
        if key not in best or term.weight > best[key].weight:
            best[key] = term
    return list(best.values())


def tile(hits: list[Hit]) -> list[Hit]:
    """Give each word to at most one agency's phrase reading, most specific first.

    'lampu jalan mati' is about street lights, not the 'lampu mati' inside it;
    in "selokan mampet, air tergenang" the 'air' is the standing water read in
    order, not a reversed 'mampet air'. Overlapping readings of one agency
    corroborate each other with their new words; readings of different
    agencies over exactly the same words are a genuine tie and both count.
    """
    ordered = sorted(hits, key=lambda h: (-len(h.tokens), h.span, not h.in_order, h.term.agency))
    owner: dict[int, str] = {}
    kept: list[Hit] = []
    for hit in ordered:
        overlap = hit.tokens & owner.keys()
        if overlap and not any(hit.tokens == k.tokens for k in kept):
            if any(owner[i] != hit.term.agency for i in overlap):
                continue
            hit = replace(hit, tokens=hit.tokens - overlap)
            if not hit.tokens:
                continue
        kept.append(hit)
        owner.update(dict.fromkeys(hit.tokens, hit.term.agency))
    return kept
