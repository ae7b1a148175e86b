"""Normalisation of complaint text for routing.

Citizens write SMS Indonesian: abbreviations (`jln`, `tdk`), stretched letters
(`tolooong`), reduplication with a digit (`anak2`), Banjar Malay (`banyu`,
`kada`), typos and no punctuation discipline. Everything the router compares —
citizen text and the directory's own vocabulary — goes through the same
`Normalizer`, so a term written once in the data matches all those variants.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rapidfuzz import process
from rapidfuzz.distance import OSA
from Sastrawi.Stemmer.StemmerFactory import StemmerFactory

from lapor.contracts import Priority
from lapor.directory import AGENCIES_FILE, DirectoryError, read_yaml, resolve_parent

LEXICON_FILE = "lexicon.yaml"

# Typos are only corrected on words long enough that one or two edits still
# leave them recognisable; shorter words collide with real words too easily.
FUZZY_MIN_LENGTH = 5
TOKEN_CACHE_SIZE = 65_536

_NON_WORD = re.compile(r"[^a-z0-9]+")
_REDUPLICATION = re.compile(r"^([a-z]{2,})2([a-z]*)$")
_STRETCHED = re.compile(r"([a-z])\1{2,}")
_CLITICS = ("nya", "lah", "kah", "ku", "mu")
_DIGIT_BOUNDARY = re.compile(r"(?<=[0-9])(?=[a-z])|(?<=[a-z])(?=[0-9])")


@dataclass(frozen=True)
class UrgencyRule:
    """Raises priority when one `when` phrase occurs (and one `with`, if any)."""

    name: str
    level: Priority
    when: tuple[str, ...]
    with_: tuple[str, ...] = ()
    # The agency that normally answers this kind of emergency, if there is one.
    agency: str | None = None


@dataclass(frozen=True)
class Lexicon:
    replacements: Mapping[str, tuple[str, ...]]
    stems: Mapping[str, str]
    stopwords: frozenset[str]
    known_words: frozenset[str]
    urgency: tuple[UrgencyRule, ...]
    hypothetical: frozenset[str] = frozenset()
    neutral: tuple[str, ...] = ()

    @classmethod
    def empty(cls) -> Lexicon:
        return cls({}, {}, frozenset(), frozenset(), ())


@dataclass(frozen=True)
class NormalizedText:
    """A text as the router sees it.

    `words` are the normalised surface words, `stems` their roots (same
    length), `positions` the index of each word counted over content words
    only, so that stopwords do not push phrase words apart. `corrections`
    lists (typed, understood) pairs for reasons shown to operators.
    """

    text: str
    words: tuple[str, ...]
    stems: tuple[str, ...]
    positions: tuple[int, ...]
    corrections: tuple[tuple[str, str], ...] = field(default=())


# --- Sastrawi ---------------------------------------------------------------


@lru_cache(maxsize=1)
def _sastrawi() -> Any:
    return StemmerFactory().create_stemmer()


@lru_cache(maxsize=1)
def root_words() -> frozenset[str]:
    """Sastrawi's dictionary of Indonesian root words."""
    return frozenset(w.strip() for w in StemmerFactory().get_words() if w.strip())


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def sastrawi_stem(word: str) -> str:
    # Sastrawi costs ~0.1-0.5 ms per unseen word; real texts repeat words a lot.
    if len(word) <= 3 or not word.isalpha():
        return word
    stem: str = _sastrawi().stem(word)
    return stem or word


# --- normaliser -------------------------------------------------------------


class Normalizer:
    """Turns raw text into `NormalizedText` using a region lexicon.

    `vocabulary` is the set of words worth recognising despite typos (the
    router passes every word of its directory terms and urgency rules).
    """

    def __init__(self, lexicon: Lexicon, vocabulary: Iterable[str] = ()) -> None:
        self.lexicon = lexicon
        self._vocabulary = frozenset(vocabulary)
        self._known = (
            self._vocabulary
            | lexicon.known_words
            | lexicon.stopwords
            | frozenset(lexicon.replacements)
            | frozenset(lexicon.stems)
        )
        by_initial: dict[str, list[str]] = {}
        for word in sorted(self._vocabulary):
            if len(word) >= FUZZY_MIN_LENGTH - 1 and word.isalpha():
                by_initial.setdefault(word[0], []).append(word)
        self._fuzzy_choices = {k: tuple(v) for k, v in by_initial.items()}
        # Per-instance caches: the lexicon decides the result, so they cannot be global.
        self.stem = lru_cache(maxsize=TOKEN_CACHE_SIZE)(self._stem)
        self._token = lru_cache(maxsize=TOKEN_CACHE_SIZE)(self._normalize_token)
        self._fuzzy = lru_cache(maxsize=TOKEN_CACHE_SIZE)(self._correct)

    # public ---------------------------------------------------------------

    def normalize(self, text: str, *, correct_typos: bool = True) -> NormalizedText:
        words: list[str] = []
        corrections: list[tuple[str, str]] = []
        for raw in raw_words(text):
            for word in self._token(raw):
                fixed = self._fuzzy(word) if correct_typos else None
                if fixed is not None:
                    corrections.append((word, fixed))
                    word = fixed
                words.append(word)
        stems = tuple(self.stem(w) for w in words)
        return NormalizedText(
            text=" ".join(words),
            words=tuple(words),
            stems=stems,
            positions=self._positions(words),
            corrections=tuple(corrections),
        )

    def term(self, term: str) -> tuple[str, ...]:
        """Stems of a vocabulary term. Stopwords are dropped only while two or more
        content words remain, so 'tidak terima' keeps its meaning."""
        normalized = self.normalize(term, correct_typos=False)
        content = tuple(
            s
            for w, s in zip(normalized.words, normalized.stems, strict=True)
            if w not in self.lexicon.stopwords
        )
        return content if len(content) >= 2 else normalized.stems

    def is_stopword(self, word: str) -> bool:
        return word in self.lexicon.stopwords

    # internals ------------------------------------------------------------

    def _positions(self, words: list[str]) -> tuple[int, ...]:
        positions, index = [], 0
        for word in words:
            positions.append(index)
            if word not in self.lexicon.stopwords:
                index += 1
        return tuple(positions)

    def _stem(self, word: str) -> str:
        pinned = self.lexicon.stems.get(word)
        if pinned is None:
            # Pins hold for the possessive/particle forms too (perawatnya, kebakarannya).
            for suffix in _CLITICS:
                if word.endswith(suffix) and word[: -len(suffix)] in self.lexicon.stems:
                    pinned = self.lexicon.stems[word[: -len(suffix)]]
                    break
        return pinned if pinned is not None else sastrawi_stem(word)

    def _normalize_token(self, raw: str) -> tuple[str, ...]:
        """One raw token -> zero or more standard words (cached)."""
        match = _REDUPLICATION.match(raw)
        if match:  # anak2 -> anak anak, mabuk2an -> mabuk mabukan
            base, suffix = match.groups()
            return self._token(base) + self._token(base + suffix)
        word = self._unstretch(raw)
        if word in self.lexicon.replacements:
            return self.lexicon.replacements[word]
        if word not in self._known and _DIGIT_BOUNDARY.search(word):
            # 500rb, 3kg, smpn1: numbers glued to words, unless the whole token is a term (sp4n)
            parts = _DIGIT_BOUNDARY.sub(" ", word).split()
            return tuple(w for part in parts for w in self._token(part))
        return (self._formalize(word),)

    def _unstretch(self, word: str) -> str:
        """tolooong -> tolong, parahhh -> parah, but maaaf -> maaf."""
        if _STRETCHED.search(word):
            single = _STRETCHED.sub(r"\1", word)
            double = _STRETCHED.sub(r"\1\1", word)
            word = double if self._is_word(double) and not self._is_word(single) else single
        # Indonesian words do not end in a doubled letter: gakk, tolongg.
        if len(word) > 3 and word[-1] == word[-2] and word.isalpha() and not self._is_word(word):
            word = word[:-1]
        return word

    def _is_word(self, word: str) -> bool:
        return word in self._known or word in root_words() or self.stem(word) in root_words()

    def _formalize(self, word: str) -> str:
        """Map colloquial and Banjar affixes to standard ones when that yields a real word:
        ngaji -> mengaji, nolak -> menolak, dibersihin -> dibersihkan, tabakar -> terbakar,
        bajual -> berjual, kabanjiran -> kebanjiran, dipajahakan -> dipajahkan."""
        if len(word) < 4 or not word.isalpha() or self._is_word(word):
            return word
        # (candidate, shortest believable root): a short root found through a rarer
        # affix is too likely a coincidence (bajir -> berjir -> 'jir').
        candidates: list[tuple[str, int]] = []
        if word.startswith("n"):
            candidates.append(("me" + word, 3))
        if word.startswith("m") and not word.startswith("me"):
            candidates.append(("me" + word, 4))  # mukul -> memukul, motong -> memotong
        if word.endswith("in"):
            candidates += [(word[:-2] + "kan", 4), (word[:-2] + "i", 4)]
            if word[0] in "mn" and not word.startswith("me"):
                # mukulin -> memukuli, nyiksain -> menyiksakan
                candidates += [("me" + word[:-2] + "i", 4), ("me" + word[:-2] + "kan", 4)]
        if word.endswith("akan"):
            candidates.append((word[:-4] + "kan", 4))
        if word.startswith("ta"):
            candidates.append(("ter" + word[2:], 4))
        if word.startswith("ba"):
            candidates.append(("ber" + word[2:], 4))
        if word.startswith("ka") and word.endswith("an"):
            candidates.append(("ke" + word[2:], 4))
        for candidate, shortest in candidates:
            stem = self.stem(candidate)
            if stem != candidate and len(stem) >= shortest and stem in root_words():
                return candidate
        return word

    def _correct(self, word: str) -> str | None:
        """Closest vocabulary word for a likely typo, or None."""
        if (
            len(word) < FUZZY_MIN_LENGTH
            or not word.isalpha()
            or word in self._known
            or self.stem(word) in self._vocabulary
            or self._is_word(word)
        ):
            return None
        choices = self._fuzzy_choices.get(word[0])
        if not choices:
            return None
        limit = 1 if len(word) < 8 else 2
        best = process.extractOne(word, choices, scorer=OSA.distance, score_cutoff=limit)
        return None if best is None else str(best[0])


def raw_words(text: str) -> list[str]:
    """Lowercase ASCII words of a text, before any lexicon is applied."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii")
    return _NON_WORD.sub(" ", ascii_only).split()


# --- lexicon loading --------------------------------------------------------


_LEXICON_KEYS = set(
    "extends abbreviations banjar stems stopwords known_words hypothetical neutral urgency".split()
)


def load_lexicon(region_dir: Path) -> Lexicon:
    """Load `<region_dir>/lexicon.yaml`, following `extends`.

    A region without its own lexicon uses the one of the region its
    agencies.yaml extends.
    """
    return _build_lexicon(_raw_lexicon(Path(region_dir), ()))


def _raw_lexicon(region_dir: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    path = region_dir / LEXICON_FILE
    if region_dir.resolve() in chain:
        raise DirectoryError(f"{path}: circular extends")
    chain = (*chain, region_dir.resolve())
    if not path.is_file():
        parent = read_yaml(region_dir / AGENCIES_FILE).get("extends")
        if parent is None:
            raise DirectoryError(f"{path}: no lexicon in this region or the ones it extends")
        return _raw_lexicon(resolve_parent(region_dir, parent, region_dir / AGENCIES_FILE), chain)
    data = read_yaml(path)
    unknown = set(data) - _LEXICON_KEYS
    if unknown:
        raise DirectoryError(f"{path}: unknown top-level keys {sorted(unknown)}")
    _check_lexicon(path, data)
    if "extends" not in data:
        return data
    base = _raw_lexicon(resolve_parent(region_dir, data["extends"], path), chain)
    return _merge_lexicon(base, data)


def _check_lexicon(path: Path, data: dict[str, Any]) -> None:
    for section in ("abbreviations", "banjar", "stems"):
        mapping = data.get(section) or {}
        if not isinstance(mapping, dict):
            raise DirectoryError(f"{path}: {section} must be a mapping of word to word(s)")
        for key, value in mapping.items():
            if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
                raise DirectoryError(f"{path}: {section}: {key!r}: must map a word to text")
    for section in ("stopwords", "known_words", "hypothetical", "neutral"):
        values = data.get(section) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DirectoryError(f"{path}: {section} must be a list of words (quote yes/no)")
    urgency = data.get("urgency") or {}
    if not isinstance(urgency, dict) or set(urgency) - {"urgent", "high"}:
        raise DirectoryError(f"{path}: urgency must have only 'urgent' and 'high' rule lists")
    for level, rules in urgency.items():
        for index, rule in enumerate(rules or []):
            where = f"{path}: urgency.{level}[{index}]"
            if not isinstance(rule, dict) or not isinstance(rule.get("name"), str):
                raise DirectoryError(f"{where}: each rule needs a name")
            if set(rule) - {"name", "when", "with", "agency"}:
                raise DirectoryError(
                    f"{where} ({rule['name']}): only name, when, with, agency allowed"
                )
            if not isinstance(rule.get("agency", ""), str):
                raise DirectoryError(f"{where} ({rule['name']}): agency must be an agency code")
            for key in ("when", "with"):
                terms = rule.get(key, [])
                if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
                    raise DirectoryError(f"{where} ({rule['name']}): {key} must list phrases")
            if not rule.get("when"):
                raise DirectoryError(f"{where} ({rule['name']}): 'when' is empty")


def _merge_lexicon(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for section in ("abbreviations", "banjar", "stems"):
        merged[section] = {**(base.get(section) or {}), **(override.get(section) or {})}
    for section in ("stopwords", "known_words", "hypothetical", "neutral"):
        merged[section] = [*(base.get(section) or []), *(override.get(section) or [])]
    urgency: dict[str, list[dict[str, Any]]] = {}
    for level in ("urgent", "high"):
        rules = {r["name"]: r for r in (base.get("urgency") or {}).get(level) or []}
        rules.update({r["name"]: r for r in (override.get("urgency") or {}).get(level) or []})
        urgency[level] = list(rules.values())
    merged["urgency"] = urgency
    return merged


def _build_lexicon(data: dict[str, Any]) -> Lexicon:
    replacements: dict[str, tuple[str, ...]] = {}
    for section in ("abbreviations", "banjar"):
        for key, value in (data.get(section) or {}).items():
            words = tuple(raw_words(value))
            key_tokens = raw_words(key)
            if len(key_tokens) == 1 and words and words != (key_tokens[0],):
                replacements[key_tokens[0]] = words
    rules = tuple(
        UrgencyRule(
            name=rule["name"],
            level=Priority(level),
            when=tuple(rule["when"]),
            with_=tuple(rule.get("with") or ()),
            agency=rule.get("agency"),
        )
        for level in ("urgent", "high")
        for rule in (data.get("urgency") or {}).get(level) or []
    )
    return Lexicon(
        replacements=replacements,
        stems={k.lower(): v.lower() for k, v in (data.get("stems") or {}).items()},
        stopwords=frozenset(w for s in data.get("stopwords") or [] for w in raw_words(s)),
        known_words=frozenset(w for s in data.get("known_words") or [] for w in raw_words(s)),
        urgency=rules,
        hypothetical=frozenset(w for s in data.get("hypothetical") or [] for w in raw_words(s)),
        neutral=tuple(data.get("neutral") or ()),
    )
