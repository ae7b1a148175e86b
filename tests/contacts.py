"""Reply addresses as events carry them, for tests that build or read events by hand:
sealed to the session's personal-data key (the one tests/conftest.py puts into the
environment, so notify built in the test process opens them too)."""

from __future__ import annotations

import os

from lapor.contracts.events import Event, contact_context
from lapor.runtime.pii import PiiOpener

NOTIFY_KEY = PiiOpener(os.environ["LAPOR_PII_KEY"])


def sealed(event_id: str, field: str, value: str | None) -> str | None:
    """`value` as intake puts it into `field` of the event `event_id`."""
    if value is None:
        return None
    return NOTIFY_KEY.sealer().seal(value, contact_context(event_id, field))


def opened(event: Event, field: str) -> str | None:
    """A sealed field of `event` as notify reads it."""
    value = getattr(event, field)
    return None if value is None else NOTIFY_KEY.open(value, contact_context(event.event_id, field))
