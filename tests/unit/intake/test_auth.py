from lapor.contracts.commands import Role
from services.intake.auth import Principal, citizen_key, citizen_principal

SECRET = b"k" * 32


def test_a_citizen_key_opens_its_own_complaint_only() -> None:
    key = citizen_key("LPR-2611-ABCD2345", SECRET)
    reporter = citizen_principal("LPR-2611-ABCD2345", key, SECRET)
    assert reporter is not None and reporter.role is Role.CITIZEN
    assert reporter.actor().id == "web:LPR-2611-ABCD2345"
    assert citizen_principal("LPR-2611-ZZZZ2345", key, SECRET) is None
    assert citizen_principal("LPR-2611-ABCD2345", key, b"x" * 32) is None
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert citizen_principal("LPR-2611-ABCD2345", tampered, SECRET) is None


def test_the_key_is_stable_and_unguessable_from_the_id() -> None:
    first = citizen_key("LPR-2611-ABCD2345", SECRET)
    assert first == citizen_key("LPR-2611-ABCD2345", SECRET)
    assert first != citizen_key("LPR-2611-ABCD2346", SECRET)
    assert first.startswith("lpc_") and len(first) == 4 + 32
    assert "ABCD2345" not in first


def test_confidential_complaints_stay_in_their_circle() -> None:
    confidential = {"_id": "LPR-1", "confidential": True, "agency": "DINKES"}
    assert Principal(Role.CITIZEN, "web:LPR-1", complaint="LPR-1").may_see(confidential)
    assert not Principal(Role.CITIZEN, "web:LPR-2", complaint="LPR-2").may_see(confidential)
    assert Principal(Role.AGENCY, "x", agency="DINKES").may_see(confidential)
    assert not Principal(Role.AGENCY, "x", agency="PUPR").may_see(confidential)
    assert Principal(Role.ADMIN, "admin").may_see(confidential)
    assert not Principal(Role.PARTNER, "app").may_see(confidential)
