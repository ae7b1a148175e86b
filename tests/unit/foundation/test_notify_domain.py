from services.notify.domain import notification_id


def test_notification_id_is_stable_and_distinguishes_each_part() -> None:
    base = notification_id("deadlines:routed:X:0", "+628123", "ack")
    assert base == notification_id("deadlines:routed:X:0", "+628123", "ack")
    assert base != notification_id("deadlines:routed:X:1", "+628123", "ack")
    assert base != notification_id("deadlines:routed:X:0", "+628124", "ack")
    assert base != notification_id("deadlines:routed:X:0", "+628123", "ack_triage")
    assert "+628123" not in base
