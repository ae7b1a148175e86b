"""SLA policy files: defaults from DESIGN.md, region overrides, fail-fast validation."""

import copy
from pathlib import Path

import pytest

from lapor.contracts import EscalationLevel, Priority, SlaClock
from services.sla.policy import (
    DEFAULTS,
    PolicyError,
    SlaPolicy,
    Unit,
    Window,
    default_policy,
    load_policy,
    merge_overrides,
)

BANJAR_DIR = Path(__file__).resolve().parents[3] / "data" / "regions" / "banjar"


def write_policy(tmp_path: Path, text: str) -> Path:
    (tmp_path / "sla.yaml").write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture(scope="module")
def banjar() -> SlaPolicy:
    return load_policy(BANJAR_DIR)


def test_banjar_policy_has_the_design_defaults(banjar: SlaPolicy) -> None:
    wd, ch, cd = Unit.WORKING_DAYS, Unit.CLOCK_HOURS, Unit.CALENDAR_DAYS
    expected = {
        (Priority.NORMAL, SlaClock.ROUTING): Window(unit=wd, amount=3),
        (Priority.NORMAL, SlaClock.FIRST_RESPONSE): Window(unit=wd, amount=5),
        (Priority.NORMAL, SlaClock.ANSWER): Window(unit=cd, amount=14),
        (Priority.HIGH, SlaClock.ROUTING): Window(unit=wd, amount=1),
        (Priority.HIGH, SlaClock.FIRST_RESPONSE): Window(unit=wd, amount=2),
        (Priority.HIGH, SlaClock.ANSWER): Window(unit=cd, amount=7),
        (Priority.URGENT, SlaClock.ROUTING): Window(unit=ch, amount=4),
        (Priority.URGENT, SlaClock.FIRST_RESPONSE): Window(unit=ch, amount=24),
        (Priority.URGENT, SlaClock.ANSWER): Window(unit=cd, amount=3),
    }
    for (priority, clock), window in expected.items():
        assert banjar.window(priority, clock) == window, (priority, clock)
    assert banjar.thresholds == (0.5, 0.8, 1.0)
    assert banjar.warnings == (0.5, 0.8)
    assert banjar.auto_close.no_reply_after == Window(unit=wd, amount=10)
    assert banjar.reopen.reply_window == Window(unit=wd, amount=10)


def test_banjar_file_spells_out_the_built_in_defaults(banjar: SlaPolicy) -> None:
    assert banjar == default_policy()


def test_escalation_chain(banjar: SlaPolicy) -> None:
    normal = banjar.escalation_for(Priority.NORMAL)
    assert normal.unit is Unit.WORKING_DAYS
    assert list(normal.levels.items()) == [
        (EscalationLevel.LIAISON, 0),
        (EscalationLevel.HEAD, 2),
        (EscalationLevel.SEKDA, 5),
        (EscalationLevel.OMBUDSMAN, 10),
    ]
    assert tuple(banjar.escalation_for(Priority.URGENT).levels) == tuple(EscalationLevel)
    assert banjar.escalation_for(Priority.URGENT).unit is Unit.CLOCK_HOURS
    assert banjar.escalation_for(Priority.HIGH).levels[EscalationLevel.HEAD] == 1


def test_region_without_sla_file_runs_on_defaults(tmp_path: Path) -> None:
    assert load_policy(tmp_path) == default_policy()
    assert load_policy(write_policy(tmp_path, "# nothing here\n")) == default_policy()


def test_an_amount_alone_keeps_the_default_unit(tmp_path: Path) -> None:
    policy = load_policy(
        write_policy(tmp_path, "priorities:\n  normal:\n    answer: {amount: 10}\n")
    )
    assert policy.window(Priority.NORMAL, SlaClock.ANSWER) == Window(
        unit=Unit.CALENDAR_DAYS, amount=10
    )
    assert policy.window(Priority.NORMAL, SlaClock.ROUTING) == Window(
        unit=Unit.WORKING_DAYS, amount=3
    )
    assert policy.priorities[Priority.URGENT] == default_policy().priorities[Priority.URGENT]


def test_a_block_with_a_unit_replaces_the_default_whole(tmp_path: Path) -> None:
    text = "escalation:\n  unit: clock_hours\n  levels: {liaison: 0, head: 8}\n"
    policy = load_policy(write_policy(tmp_path, text))
    chain = policy.escalation_for(Priority.NORMAL)
    assert chain.unit is Unit.CLOCK_HOURS
    assert dict(chain.levels) == {EscalationLevel.LIAISON: 0, EscalationLevel.HEAD: 8}


def test_levels_alone_merge_with_the_default_chain(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, "escalation:\n  levels: {head: 3}\n"))
    chain = policy.escalation_for(Priority.NORMAL)
    assert chain.unit is Unit.WORKING_DAYS
    assert list(chain.levels.values()) == [0, 3, 5, 10]


def test_merging_leaves_the_defaults_untouched() -> None:
    before = copy.deepcopy(DEFAULTS)
    merge_overrides(DEFAULTS, {"priorities": {"normal": {"answer": {"amount": 1}}}})
    assert before == DEFAULTS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("priorities:\n  normal:\n    answer: {unit: weeks, amount: 2}\n", "unit"),
        ("priorities:\n  normal:\n    answer: {unit: calendar_days, amount: 0}\n", "amount"),
        ("priorities:\n  normal:\n    answer: {unit: calendar_days, amount: 1.5}\n", "amount"),
        ("priorities:\n  normal:\n    answer: {unit: calendar_days, amont: 3}\n", "amont"),
        ("priorities:\n  critical:\n    answer: {amount: 1}\n", "critical"),
        ("priorites:\n  normal: {}\n", "priorites"),
        ("thresholds: [0.8, 0.5, 1.0]\n", "increasing"),
        ("thresholds: [0.5, 0.8]\n", "end with 1.0"),
        ("thresholds: [0, 0.5, 1.0]\n", r"\(0, 1\]"),
        ("thresholds: [0.5, 0.501, 1.0]\n", "one percent"),
        ("escalation:\n  unit: working_days\n  levels: {head: 0, liaison: 1}\n", "order"),
        ("escalation:\n  unit: working_days\n  levels: {liaison: 3, head: 1}\n", "before"),
        ("escalation:\n  unit: working_days\n  levels: {liaison: -1}\n", "negative"),
        ("escalation:\n  unit: working_days\n  levels: {}\n", "at least one"),
        ("escalation:\n  unit: working_days\n  levels: {bupati: 1}\n", "bupati"),
        ("version: 2\n", "version"),
        ("- normal\n", "mapping"),
        ("thresholds: [0.5\n", "YAML"),
    ],
)
def test_invalid_policy_fails_fast_with_the_file_name(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(write_policy(tmp_path, text))
    assert str(tmp_path / "sla.yaml") in str(caught.value)


def test_policy_is_immutable(banjar: SlaPolicy) -> None:
    with pytest.raises(ValueError):
        banjar.thresholds = (1.0,)  # type: ignore[misc]
