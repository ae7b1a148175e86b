"""SLA's message handlers: every routing decision and state change becomes a fact;
the complaint's timers follow from all its facts, and new deadlines are announced."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from lapor.contracts import ComplaintRouted, ComplaintStateChanged, DeadlinesSet
from services.sla.announcements import (
    REPLY_WINDOW_STATES,
    deadline_announcements,
    reopen_announcement,
)
from services.sla.clocks import Plan
from services.sla.engine import Publisher, SlaEngine
from services.sla.facts import Fact, routed_fact, state_fact
from services.sla.plan import RegionRules

__all__ = ["RegionRules", "SlaDeps", "handle_routed", "handle_state_changed"]


@dataclass(frozen=True)
class SlaDeps:
    engine: SlaEngine
    # Reopen windows go out where intake already hears auto-close from SLA.
    reply_windows: Publisher
    default_region: str = "banjar"

    @property
    def regions(self) -> Mapping[str, RegionRules]:
        return self.engine.regions

    @property
    def clock(self) -> Callable[[], datetime]:
        """The one injectable clock: handlers, sweep and API all read it."""
        return self.engine.clock


async def _apply(deps: SlaDeps, complaint_id: str, fact: Fact) -> None:
    def announce(plan: Plan) -> list[DeadlinesSet]:
        occurred_at = deps.regions[plan.region].calendar.local(deps.clock())
        return deadline_announcements(plan, fact, occurred_at)

    # The announcements are stored with the clock summary, then published; a
    # redelivery publishes what is still pending, and the sweep what a crash left.
    await deps.engine.record(complaint_id, fact, announce)


async def handle_routed(event: ComplaintRouted, deps: SlaDeps) -> None:
    await _apply(deps, event.complaint_id, routed_fact(event))


async def handle_state_changed(event: ComplaintStateChanged, deps: SlaDeps) -> None:
    if event.follows_routing:
        return  # the routing decision, heard on its own, is the fact (plan: _current_state)
    await _apply(deps, event.complaint_id, state_fact(event))
    if event.state not in REPLY_WINDOW_STATES:
        return
    rules = deps.regions.get(event.region)
    if rules is None:
        # Redelivered, then dead-lettered: a region without rules is a data error to see.
        raise LookupError(f"no SLA rules for region {event.region!r}")
    window = reopen_announcement(event, rules, rules.calendar.local(deps.clock()))
    if window is not None:
        await deps.reply_windows.publish(window, msg_id=window.event_id)
