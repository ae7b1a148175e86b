"""The chaos check itself, on made-up histories: it must see every anomaly."""

from __future__ import annotations

from tests.chaos.jepsen import History, Observed, check


def _history() -> History:
    return History(attempted={"a", "b", "c", "d"}, accepted={"a", "b", "c"})


def test_a_clean_run_passes() -> None:
    observed = Observed(
        complaints=[("sms:a", "C1"), ("sms:b", "C2"), ("sms:c", "C3")],
        ack_notifications=[("n1", "C1"), ("n2", "C2"), ("n3", "C3")],
        outbound=[("n1", "C1"), ("n2", "C2"), ("n3", "C3"), ("other", "C1")],
    )
    verdict = check(_history(), observed)
    assert verdict.ok, verdict
    assert verdict.acknowledged == 3 and verdict.indeterminate == 1


def test_every_anomaly_is_reported() -> None:
    observed = Observed(
        # a: two complaints; c: none although accepted; d (indeterminate) stored, unacked.
        complaints=[
            *[("sms:a", "C1"), ("sms:a", "C1b"), ("sms:b", "C2"), ("sms:d", "C4")],
            *[("sms:zz", "C9"), ("web:x", "C10")],
        ],
        # C2: two acknowledgements; C1b: notification but never on the bus.
        ack_notifications=[
            *[("n1", "C1"), ("n2", "C2"), ("n2b", "C2"), ("n1b", "C1b")],
            ("n9", "C404"),
        ],
        outbound=[("n1", "C1"), ("n1", "C1"), ("n2", "C2"), ("n2b", "C2")],
    )
    verdict = check(_history(), observed)

    assert any("sms c" in x for x in verdict.lost)
    assert any("C1b" in x and "never on the bus" in x for x in verdict.lost)
    assert any("C4" in x and "no acknowledgement" in x for x in verdict.lost)
    assert any("sms a: 2 complaints" in x for x in verdict.duplicated)
    assert any("C2: 2 acknowledgements" in x for x in verdict.duplicated)
    assert any("C1: 2 acknowledgement SMS" in x for x in verdict.duplicated)
    assert len(verdict.unexpected) == 3
    assert not verdict.ok
