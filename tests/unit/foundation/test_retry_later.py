"""When a failed message comes back: the backoff, or the time its failure names."""

from types import SimpleNamespace
from typing import Any

import pytest
from faststream.exceptions import NackMessage

from lapor.runtime.handling import RETRY_DELAYS_S, DependencyUnavailable, RetryLater


def _delivered(n: int) -> Any:
    metadata = SimpleNamespace(consumer="gateway-sms", num_delivered=n)
    return SimpleNamespace(
        raw_message=SimpleNamespace(subject="lapor.outbound.sms", metadata=metadata)
    )


async def _delay_after(exc: Exception, delivery: int) -> float | None:
    async def failing(_msg: Any) -> None:
        raise exc

    middleware = RetryLater(None, context=None)  # type: ignore[arg-type]
    with pytest.raises(NackMessage) as nacked:
        await middleware.consume_scope(failing, _delivered(delivery))
    return nacked.value.extra_options.get("delay")


async def test_a_dependency_away_is_tried_again_after_the_backoff() -> None:
    assert await _delay_after(DependencyUnavailable("away"), 3) == RETRY_DELAYS_S[2]


async def test_a_dependency_that_says_when_is_tried_again_then() -> None:
    """A wait that ends in 17 s: then, neither at the next step (30 s) nor before."""
    assert await _delay_after(DependencyUnavailable("wait", retry_in_s=17.0), 3) == 17.0
    assert await _delay_after(DependencyUnavailable("wait", retry_in_s=0.0), 3) == RETRY_DELAYS_S[0]
