"""Views of a complaint outside the admins never carry a citizen's pseudonym, which
would link all complaints of one sender, anonymous ones included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.intake.views import public_actor, public_view

AT = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)
SMS_CITIZEN = "citizen:sms:0123456789ab"


def _doc() -> dict[str, object]:
    actors = [
        "intake:sms",
        "router",
        SMS_CITIZEN,
        "agency:petugas-pupr",
        "citizen:web:LPR-7K3M-9QX2T",
        "citizen",
    ]
    return {
        "_id": "LPR-7K3M-9QX2T",
        "region": "banjar",
        "channel": "sms",
        "state": "in_progress",
        "agency": "PUPR",
        "received_at": AT,
        "text": "Jalan berlubang besar di depan pasar",
        "anonymous": True,
        "reporter_hash": "0123456789ab" + "c" * 20,
        "history": [
            {"at": AT + timedelta(minutes=n), "state": None, "actor": actor, "reason": "r"}
            | {"event_id": f"e{n}"}
            for n, actor in enumerate(actors)
        ],
    }


def test_citizens_are_just_citizen_for_everyone_but_admins() -> None:
    view = public_view(_doc(), ZoneInfo("Asia/Makassar"))
    assert [h.actor for h in view.history] == [
        "intake:sms",
        "router",
        "citizen",
        "agency",  # officers' names are not for the public either
        "citizen",
        "citizen",
    ]
    assert "0123456789ab" not in json.dumps(view.model_dump(mode="json"))


def test_admins_keep_the_detail() -> None:
    view = public_view(_doc(), ZoneInfo("Asia/Makassar"), actors=True)
    assert view.history[2].actor == SMS_CITIZEN


def test_only_the_citizen_role_is_generalised() -> None:
    assert public_actor("citizen:sms:abc") == "citizen"
    assert public_actor("citizens-office") == "citizens-office"
    assert public_actor("admin:diskominfo") == "admin:diskominfo"
