"""Abuse and repetition rules for inbound messages, pure: rate limits and near-duplicates."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rapidfuzz import fuzz, utils


@dataclass(frozen=True)
class RateLimit:
    per_hour: int
    per_day: int

    def exceeded(self, last_hour: int, last_day: int) -> bool:
        """Counts include the message being judged."""
        return last_hour > self.per_hour or last_day > self.per_day

    @staticmethod
    def notice_key(phone_hash: str, at: datetime) -> str:
        # One notice per sender per clock hour: a flood gets one answer, not hundreds.
        return f"{phone_hash}:{at.astimezone(UTC).strftime('%Y%m%d%H')}"


def similar_complaint(
    text: str, recent: Iterable[dict[str, Any]], threshold: float
) -> dict[str, Any] | None:
    """The most similar recent complaint of the same sender, if it is (nearly) the same text."""
    best: tuple[float, dict[str, Any]] | None = None
    for doc in recent:
        score = fuzz.token_set_ratio(text, doc["text"], processor=utils.default_process)
        if score >= threshold and (best is None or score > best[0]):
            best = (score, doc)
    return best[1] if best else None


def windows(at: datetime) -> tuple[datetime, datetime]:
    return at - timedelta(hours=1), at - timedelta(days=1)
