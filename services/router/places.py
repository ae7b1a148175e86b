"""Finding the kecamatan and desa/kelurahan a complaint text is about.

Pure: the region's gazetteer (places.json, generated from a package of
Kemendagri codes) and its spelling notes (places_spelling.yaml) are loaded
once. Names and text go through the router's own normaliser, so `ds`, `kec.`,
`aluh2` or Banjar `hanyar` mean the same on both sides; typos are forgiven by
edit distance (rapidfuzz) on the words with spaces removed, so `sungaitabuk`
and `sungai tabk` both find Sungai Tabuk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from lapor.contracts import Place, PlaceArea, PlaceCandidate
from lapor.directory import DirectoryError, read_yaml
from lapor.places import District, Gazetteer, Village, load_gazetteer
from services.router.text import Normalizer, load_lexicon, raw_words, root_words

SPELLING_FILE = "places_spelling.yaml"
Marker = Literal["desa", "kecamatan", "weak"]

# A name is recognised despite typos only when long enough that an edit or two
# leaves it unmistakable: one edit from 6 letters, two from 11.
ONE_EDIT_FROM = 6
TWO_EDITS_FROM = 11
EXACT = 1.0
MISSING_MARKER = 0.9
TYPO = 0.8
# A desa named without its kecamatan in a text that names another kecamatan.
DISAGREEING = 0.7
AMBIGUOUS = 0.5
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class _Target:
    district: District
    village: Village | None


@dataclass(frozen=True)
class _Name:
    words: tuple[str, ...]
    targets: tuple[_Target, ...]
    needs_marker: bool

    @property
    def key(self) -> str:
        return "".join(self.words)


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    name: _Name
    typo: bool
    marker: Marker | None


@dataclass(frozen=True)
class Spelling:
    variants: Mapping[str, str]
    markers: Mapping[str, Marker]
    needs_marker: frozenset[str]


def load_spelling(region_dir: Path) -> Spelling:
    path = region_dir / SPELLING_FILE
    data = read_yaml(path) if path.is_file() else {}
    variants = data.get("variants") or {}
    markers = data.get("markers") or {}
    if not isinstance(variants, dict) or not isinstance(markers, dict):
        raise DirectoryError(f"{path}: variants and markers must be mappings")
    if set(markers) - {"desa", "kecamatan", "weak"}:
        raise DirectoryError(f"{path}: markers are desa, kecamatan and weak")
    return Spelling(
        variants={str(k).lower(): str(v).lower() for k, v in variants.items()},
        markers={str(w).lower(): kind for kind, words in markers.items() for w in words or []},
        needs_marker=frozenset(str(n).lower() for n in data.get("needs_marker") or []),
    )


class PlaceFinder:
    def __init__(self, gazetteer: Gazetteer, normalizer: Normalizer, spelling: Spelling) -> None:
        self.gazetteer = gazetteer
        self._normalizer = normalizer
        self._spelling = spelling
        targets: dict[tuple[str, ...], list[_Target]] = {}
        raw_names: dict[tuple[str, ...], str] = {}
        for district in gazetteer.districts:
            words = self._words(district.name)
            targets.setdefault(words, []).append(_Target(district, None))
            raw_names[words] = district.name.lower()
        for district, village in gazetteer.villages():
            words = self._words(village.name)
            targets.setdefault(words, []).append(_Target(district, village))
            raw_names[words] = village.name.lower()
        self._names = {
            words: _Name(
                words,
                tuple(found),
                " ".join(words) in spelling.needs_marker
                or raw_names[words] in spelling.needs_marker,
            )
            for words, found in targets.items()
        }
        by_key: dict[str, list[_Name]] = {}
        for name in self._names.values():
            by_key.setdefault(name.key, []).append(name)
        self._by_key = by_key
        self._keys_by_initial: dict[str, tuple[str, ...]] = {}
        for key in sorted(by_key):
            self._keys_by_initial.setdefault(key[0], ())
            self._keys_by_initial[key[0]] += (key,)
        self._longest = max(len(words) for words in self._names) + 1
        self._dictionary = root_words() | normalizer.lexicon.known_words

    @classmethod
    def load(cls, region_dir: Path) -> PlaceFinder | None:
        """The region's finder, or None for a region without a gazetteer."""
        gazetteer = load_gazetteer(region_dir)
        if gazetteer is None:
            return None
        names = [d.name for d in gazetteer.districts] + [v.name for _, v in gazetteer.villages()]
        vocabulary = {w for n in names for w in raw_words(n)}
        normalizer = Normalizer(load_lexicon(region_dir), vocabulary)
        return cls(gazetteer, normalizer, load_spelling(region_dir))

    @property
    def marker_words(self) -> frozenset[str]:
        """Words that announce a place (ds, kec, kelurahan, ...): not part of a problem."""
        return frozenset(self._spelling.markers)

    def find(self, text: str) -> Place | None:
        words = self._words(text)
        matches = self._select(self._matches(words))
        return self._resolve(matches)

    # internals ------------------------------------------------------------

    def _words(self, text: str) -> tuple[str, ...]:
        # Apostrophes join (Ati'im, Pa'au); everything else separates words.
        plain = text.replace("'", "").replace("`", "").replace("\u2019", "")
        normalized = self._normalizer.normalize(plain, correct_typos=False)
        return tuple(self._spelling.variants.get(w, w) for w in normalized.words)

    def _matches(self, words: tuple[str, ...]) -> list[_Match]:
        found = []
        for start in range(len(words)):
            if words[start] in self._spelling.markers:
                continue
            marker = self._spelling.markers.get(words[start - 1]) if start else None
            for end in range(start + 1, min(start + self._longest, len(words)) + 1):
                window = words[start:end]
                for name, typo in self._lookup(window):
                    if abs(len(name.words) - len(window)) > 1:
                        continue
                    if name.needs_marker and marker is None:
                        continue
                    found.append(_Match(start, end, name, typo, marker))
        return found

    def _lookup(self, window: tuple[str, ...]) -> Iterable[tuple[_Name, bool]]:
        key = "".join(window)
        exact = self._by_key.get(key)
        if exact:
            return [(name, False) for name in exact]
        if len(key) < ONE_EDIT_FROM or all(w in self._dictionary for w in window):
            return []
        limit = 2 if len(key) >= TWO_EDITS_FROM else 1
        choices = self._keys_by_initial.get(key[0], ())
        close = process.extract(
            key, choices, scorer=Levenshtein.distance, score_cutoff=limit, limit=3
        )
        return [(name, True) for found, _, _ in close for name in self._by_key[found]]

    @staticmethod
    def _select(matches: list[_Match]) -> list[_Match]:
        """Non-overlapping matches, the longest and closest readings first, in text order."""
        ranked = sorted(matches, key=lambda m: (-len(m.name.key), m.typo, m.start))
        taken: list[_Match] = []
        used: set[int] = set()
        for match in ranked:
            span = set(range(match.start, match.end))
            if span & used:
                continue
            taken.append(match)
            used |= span
        return sorted(taken, key=lambda m: m.start)

    def _resolve(self, matches: list[_Match]) -> Place | None:
        if not matches:
            return None
        named_districts: list[tuple[District, _Match]] = []
        village_options: list[tuple[list[_Target], _Match]] = []
        for match in matches:
            districts = [t for t in match.name.targets if t.village is None]
            villages = [t for t in match.name.targets if t.village is not None]
            if districts and match.marker != "desa":
                named_districts.append((districts[0].district, match))
            elif villages and match.marker != "kecamatan":
                village_options.append((villages, match))
        district_codes = {d.code for d, _ in named_districts}
        for villages, match in village_options:
            agreeing = [t for t in villages if t.district.code in district_codes]
            if len(agreeing) == 1:
                return _place(agreeing[0], _confidence(match))
        for villages, match in village_options:
            if len(villages) == 1:
                conflict = district_codes and villages[0].district.code not in district_codes
                return _place(villages[0], _confidence(match) * (DISAGREEING if conflict else 1))
        if named_districts:
            district, match = named_districts[0]
            return _place(_Target(district, None), _confidence(match))
        villages, match = village_options[0]
        return Place(
            kecamatan=None,
            desa=None,
            source="text",
            confidence=AMBIGUOUS,
            ambiguous=True,
            candidates=[
                PlaceCandidate(kecamatan=_area(t.district), desa=_area(t.village))
                for t in villages[:MAX_CANDIDATES]
            ],
        )


def _confidence(match: _Match) -> float:
    if match.typo:
        return TYPO
    return EXACT if match.marker in ("desa", "kecamatan") else MISSING_MARKER


def _area(area: District | Village | None) -> PlaceArea | None:
    return None if area is None else PlaceArea(code=area.code, name=area.name)


def _place(target: _Target, confidence: float) -> Place:
    return Place(
        kecamatan=_area(target.district),
        desa=_area(target.village),
        source="text",
        confidence=round(confidence, 3),
    )
