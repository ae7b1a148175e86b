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

    def over_daily(self, last_day: int) -> bool:
        return last_day > self.per_day

    @staticmethod
    def notice_keys(phone_hash: str, at: datetime, *, daily: bool) -> tuple[str, ...]:
        """What a rate-limit notice must claim, all of it, before it is sent.

        A notice claims the slot of its window and the next one, so the next
        notice can only come two slots later: two notices are always more than
        a whole window apart, in any sliding window, not just per clock hour.
        Every notice claims hour slots, so a daily notice never follows an
        hourly one within the hour; a notice while over the daily limit also
        claims day slots, so a sender who keeps sending all day is told once.
        Hour slots come first: a daily notice refused because an hourly one was
        just sent leaves the day free for a later one.
        """
        hours = _slot_keys(phone_hash, "h", at, _HOUR)
        return (*hours, *_slot_keys(phone_hash, "d", at, DAY)) if daily else hours


@dataclass(frozen=True)
class SenderMessages:
    """A message counted against its sender's number."""

    # False for a repeat delivery of a message counted before.
    first: bool
    # When the sender's kept messages were received, this one included.
    times: tuple[datetime, ...]

    def since(self, when: datetime) -> int:
        return sum(1 for at in self.times if at >= when)


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
    return at - _HOUR, at - DAY


_HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _slot_keys(phone_hash: str, kind: str, at: datetime, window: timedelta) -> tuple[str, str]:
    slot = (at.astimezone(UTC) - _EPOCH) // window
    return f"{phone_hash}:{kind}{slot}", f"{phone_hash}:{kind}{slot + 1}"
