"""When to try a failed delivery again: exponential backoff with a cap, pure.

Short waits happen inside the handler; longer ones hand the event back to
JetStream with a delayed NAK. Either way the whole handler run must stay
below the consumer's ack wait (10 s), or the server would redeliver the event
while it is still being worked on; hence the time budget.
"""

from dataclasses import dataclass
from enum import StrEnum


class RetryAction(StrEnum):
    NOW = "now"  # wait `delay_s` in the handler, then try again
    REDELIVER = "redeliver"  # NAK the event with `delay_s`
    GIVE_UP = "give_up"  # mark the notification failed


@dataclass(frozen=True, slots=True)
class RetryPlan:
    action: RetryAction
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 2.0
    factor: float = 3.0
    max_delay_s: float = 600.0
    max_attempts: int = 7
    inline_max_s: float = 2.0
    # Time one handler run may spend on a notification, below the 10 s ack wait.
    inline_budget_s: float = 8.0
    # Up to this fraction is added to each delay, so that recipients retried
    # together after an outage do not all hit the recovering server at once.
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.factor < 1 or self.max_delay_s < self.base_s:
            raise ValueError("backoff needs base > 0, factor >= 1 and max_delay >= base")
        if self.max_attempts < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("max_attempts must be at least 1 and jitter within 0..1")

    def delay_after(self, attempt: int, rand: float = 0.0) -> float:
        """Wait after the `attempt`-th failed attempt (1-based); `rand` in [0, 1)."""
        if attempt < 1:
            raise ValueError("attempts are counted from 1")
        # min() before the power would overflow for absurd attempt numbers.
        exponent = min(attempt - 1, 64)
        raw = min(self.max_delay_s, self.base_s * self.factor**exponent)
        return raw * (1 + self.jitter * rand)

    def schedule(self) -> list[float]:
        """The waits between attempts, without jitter (for docs, tests and ops)."""
        return [self.delay_after(n) for n in range(1, self.max_attempts)]


def plan_retry(
    policy: RetryPolicy,
    *,
    attempts: int,
    elapsed_s: float,
    send_timeout_s: float,
    last_chance: bool,
    rand: float = 0.0,
) -> RetryPlan:
    """What to do after `attempts` attempts ended in a temporary failure.

    `elapsed_s` is the time this handler run has spent so far; `last_chance`
    says the event will not be redelivered again (the consumer's delivery cap).
    """
    if attempts >= policy.max_attempts:
        return RetryPlan(RetryAction.GIVE_UP)
    delay = policy.delay_after(attempts, rand)
    worst_next_run = elapsed_s + delay + send_timeout_s
    if delay <= policy.inline_max_s and worst_next_run <= policy.inline_budget_s:
        return RetryPlan(RetryAction.NOW, delay)
    if last_chance:
        return RetryPlan(RetryAction.GIVE_UP)
    return RetryPlan(RetryAction.REDELIVER, delay)
