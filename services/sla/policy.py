"""SLA policy of a region: how long each clock runs, when to warn, how a breach escalates.

The built-in defaults are those of DESIGN.md ("Deadlines"); a region's
`sla.yaml` overrides them. Override rule: mappings merge key by key, so a
region may change one amount and keep everything else; but a block that names
its own `unit` (a window or an escalation chain) replaces the default block as
a whole, and a list replaces the default list. A region without `sla.yaml`
runs on the defaults. Anything unknown or inconsistent stops the service at
start-up with the file name and the offending key, rather than running with a
policy nobody wrote.

Windows are `{unit, amount}` with unit `working_days`, `clock_hours`,
`clock_minutes` or `calendar_days`; lapor/calendar.py defines how each unit is counted.
"""

from collections.abc import Mapping
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lapor.contracts import EscalationLevel, Priority, SlaClock
from lapor.regions import DEFAULT_REOPEN_WINDOW


class PolicyError(ValueError):
    """A region's sla.yaml is invalid."""


class Unit(StrEnum):
    WORKING_DAYS = "working_days"
    CLOCK_HOURS = "clock_hours"
    # Short windows an operator may want (and tests of the whole chain need).
    CLOCK_MINUTES = "clock_minutes"
    CALENDAR_DAYS = "calendar_days"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    unit: Unit
    amount: int = Field(ge=1)

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.value}"


class Escalation(_Strict):
    """Levels in chain order, each with its delay counted from the breach."""

    unit: Unit
    levels: dict[EscalationLevel, int]

    @field_validator("levels")
    @classmethod
    def _ordered(cls, levels: dict[EscalationLevel, int]) -> dict[EscalationLevel, int]:
        if not levels:
            raise ValueError("an escalation chain needs at least one level")
        names = list(levels)
        # The contracts list the levels in chain order.
        canonical = [level for level in EscalationLevel if level in levels]
        if names != canonical:
            order = ", ".join(EscalationLevel)
            raise ValueError(f"levels must follow the chain order {order}; got {names}")
        delays = list(levels.values())
        if any(delay < 0 for delay in delays):
            raise ValueError(f"delays after the breach must not be negative: {delays}")
        if delays != sorted(delays):
            raise ValueError(f"a higher level cannot come before a lower one: {delays}")
        return levels


class PriorityPolicy(_Strict):
    routing: Window
    first_response: Window
    answer: Window
    escalation: Escalation | None = Field(
        default=None, description="Chain for this priority; the policy's chain if absent."
    )

    def window(self, clock: SlaClock) -> Window:
        window: Window = getattr(self, clock.value)
        return window


class AutoClose(_Strict):
    no_reply_after: Window


class Reopen(_Strict):
    """How long the citizen may reopen, and how long the agency then has to answer again.

    `answer` is counted from the reopening, by the latest routing decision's
    priority; the round it starts warns, breaches and escalates like the first.
    """

    reply_window: Window
    answer: dict[Priority, Window]

    @field_validator("answer")
    @classmethod
    def _every_priority(cls, value: dict[Priority, Window]) -> dict[Priority, Window]:
        missing = [p.value for p in Priority if p not in value]
        if missing:
            raise ValueError(f"no reopen answer window for priorities {missing}")
        return value


class NeedsInfo(_Strict):
    """How long an agency's question to the citizen may hold the answer clock."""

    reply_window: Window


class SlaPolicy(_Strict):
    version: Literal[1] = 1
    thresholds: tuple[float, ...]
    routing_agency: str = Field(
        default="DISKOMINFO",
        min_length=1,
        description="Agency held to the routing clock (verification and triage).",
    )
    priorities: dict[Priority, PriorityPolicy]
    escalation: Escalation
    auto_close: AutoClose
    reopen: Reopen
    needs_info: NeedsInfo

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or value[-1] != 1.0:
            raise ValueError("thresholds must end with 1.0, the breach")
        if any(not 0 < t <= 1 for t in value):
            raise ValueError(f"thresholds are fractions of the window in (0, 1]: {value}")
        if any(a >= b for a, b in pairwise(value)):
            raise ValueError(f"thresholds must be strictly increasing: {value}")
        labels = [round(t * 100) for t in value]
        if len(set(labels)) != len(labels):
            raise ValueError(f"thresholds must differ by at least one percent: {value}")
        return value

    @field_validator("priorities")
    @classmethod
    def _every_priority(
        cls, value: dict[Priority, PriorityPolicy]
    ) -> dict[Priority, PriorityPolicy]:
        missing = [p.value for p in Priority if p not in value]
        if missing:
            raise ValueError(f"no policy for priorities {missing}")
        return value

    @property
    def warnings(self) -> tuple[float, ...]:
        return self.thresholds[:-1]

    def window(self, priority: Priority, clock: SlaClock) -> Window:
        return self.priorities[priority].window(clock)

    def reopen_answer(self, priority: Priority) -> Window:
        """The answer window after a reopening, counted from the reopening."""
        return self.reopen.answer[priority]

    def escalation_for(self, priority: Priority) -> Escalation:
        return self.priorities[priority].escalation or self.escalation


def _window(unit: Unit, amount: int) -> dict[str, Any]:
    return {"unit": unit.value, "amount": amount}


_WD, _CH, _CD = Unit.WORKING_DAYS, Unit.CLOCK_HOURS, Unit.CALENDAR_DAYS

# DESIGN.md "Deadlines". Routing for high and urgent, and the faster chains
# for them, are not in DESIGN: they follow from "picked out and answered
# first" and are documented in data/regions/banjar/sla.yaml.
DEFAULTS: dict[str, Any] = {
    "version": 1,
    "thresholds": [0.5, 0.8, 1.0],
    "priorities": {
        "normal": {
            "routing": _window(_WD, 3),
            "first_response": _window(_WD, 5),
            "answer": _window(_CD, 14),
        },
        "high": {
            "routing": _window(_WD, 1),
            "first_response": _window(_WD, 2),
            "answer": _window(_CD, 7),
            "escalation": {
                "unit": _WD.value,
                "levels": {"liaison": 0, "head": 1, "sekda": 3, "ombudsman": 5},
            },
        },
        "urgent": {
            "routing": _window(_CH, 4),
            "first_response": _window(_CH, 24),
            "answer": _window(_CD, 3),
            "escalation": {
                "unit": _CH.value,
                "levels": {"liaison": 0, "head": 2, "sekda": 6, "ombudsman": 24},
            },
        },
    },
    "escalation": {
        "unit": _WD.value,
        "levels": {"liaison": 0, "head": 2, "sekda": 5, "ombudsman": 10},
    },
    "auto_close": {"no_reply_after": _window(_WD, 10)},
    # Shared with notify, which tells the citizen the window's length.
    # The answer after a reopening: not in DESIGN as a number. The agency knows the
    # case already, so it gets the first-response window of the priority again.
    "reopen": {
        "reply_window": _window(Unit(DEFAULT_REOPEN_WINDOW[0]), DEFAULT_REOPEN_WINDOW[1]),
        "answer": {
            "normal": _window(_WD, 5),
            "high": _window(_WD, 2),
            "urgent": _window(_CH, 24),
        },
    },
    # Not in DESIGN as a number: the citizen gets as long to answer a question
    # as to react to an answer before it closes as no_reply.
    "needs_info": {"reply_window": _window(_WD, 10)},
}


def merge_overrides(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it, by the rule in the module docstring."""
    merged = dict(base)
    for key, value in override.items():
        default = merged.get(key)
        if isinstance(value, Mapping) and isinstance(default, Mapping) and "unit" not in value:
            merged[key] = merge_overrides(default, value)
        else:
            merged[key] = value
    return merged


def parse_policy(override: Mapping[str, Any], source: str = "sla.yaml") -> SlaPolicy:
    """The defaults overridden by `override` (the parsed sla.yaml), validated."""
    try:
        return SlaPolicy.model_validate(merge_overrides(DEFAULTS, override))
    except ValidationError as exc:
        raise PolicyError(f"{source}: {exc}") from exc


def default_policy() -> SlaPolicy:
    return parse_policy({}, source="built-in defaults")


def load_policy(region_dir: Path) -> SlaPolicy:
    """The policy of a region directory: its `sla.yaml` over the defaults."""
    path = region_dir / "sla.yaml"
    if not path.exists():
        return default_policy()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}: expected a mapping at the top level")
    return parse_policy(raw, source=str(path))
