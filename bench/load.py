"""The load generator: SMS onto `lapor.inbound.sms`, acknowledgements off `lapor.outbound.sms`.

Every SMS comes from its own phone number, so the acknowledgement (which
carries the recipient and the tracking id) identifies the SMS it answers.
Latency runs from the moment an SMS was due to be sent (open loop: the
schedule, so a late generator cannot hide queueing) or was sent (closed loop)
to the moment its acknowledgement arrives. The acknowledgement is published
after the complaint is assigned and its deadlines are set, which a sample of
stored complaints confirms after each step.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.stats import latency_summary
from bench.texts import complaint_text, sender_number
from lapor.contracts import subjects


@dataclass
class Flight:
    step: str
    sent_at: float  # perf_counter seconds


@dataclass(frozen=True)
class Done:
    step: str
    at: float
    latency_s: float
    complaint_id: str | None


@dataclass
class StepStatus:
    step: str
    started: float
    sent: int = 0
    completed: int = 0
    target: int | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass
class StepResult:
    step: str
    mode: str  # "open" (fixed rate) or "closed" (maximum rate, bounded window)
    offered_per_s: float | None
    sent: int
    completed: int
    missing: int
    publish_errors: int
    stopped_early: bool
    throughput_per_s: float | None
    latency: dict[str, Any]
    window_s: float
    complaint_ids: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    idle_after: bool = True
    purged: bool = False
    verified: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "mode": self.mode,
            "offered_per_s": self.offered_per_s,
            "sent": self.sent,
            "completed": self.completed,
            "missing": self.missing,
            "publish_errors": self.publish_errors,
            "stopped_early": self.stopped_early,
            "throughput_per_s": self.throughput_per_s,
            "window_s": round(self.window_s, 2),
            "idle_after": self.idle_after,
            "purged": self.purged,
            **self.latency,
        }


Progress = Callable[[StepStatus], None]


class LoadDriver:
    def __init__(self, nc: Any, run_id: int, seed: int = 1708) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._run_id = run_id
        self._rng = random.Random(seed)  # noqa: S311 - load data, not secrets
        self._index = 0
        self._inflight: dict[str, Flight] = {}
        self._pending: dict[str, int] = {}
        self._idle: dict[str, asyncio.Event] = {}
        self._done: dict[str, list[Done]] = {}
        self._window: dict[str, asyncio.Semaphore] = {}
        self._errors: dict[str, int] = {}
        self.unmatched = 0
        self._sub: Any = None

    async def attach(self) -> None:
        # Subscribed before the first publish, so no acknowledgement is missed.
        self._sub = await self._nc.subscribe(subjects.OUTBOUND_SMS, cb=self._on_outbound)

    async def detach(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    def inflight(self, step: str | None = None) -> int:
        if step is None:
            return len(self._inflight)
        return self._pending.get(step, 0)

    def _track(self, to: str, flight: Flight) -> None:
        self._inflight[to] = flight
        self._pending[flight.step] = self._pending.get(flight.step, 0) + 1

    def _untrack(self, to: str) -> Flight | None:
        flight = self._inflight.pop(to, None)
        if flight is not None:
            left = self._pending[flight.step] = self._pending[flight.step] - 1
            if left == 0 and (idle := self._idle.get(flight.step)) is not None:
                idle.set()
        return flight

    async def _on_outbound(self, msg: Any) -> None:
        now = time.perf_counter()
        try:
            data = json.loads(msg.data)
            flight = self._untrack(data["to"])
        except (ValueError, KeyError, TypeError):
            flight = None
        if flight is None:
            self.unmatched += 1
            return
        done = Done(flight.step, now, now - flight.sent_at, data.get("complaint_id"))
        self._done.setdefault(flight.step, []).append(done)
        if (window := self._window.get(flight.step)) is not None:
            window.release()

    def _next_sms(self) -> tuple[str, bytes, str]:
        self._index += 1
        to = sender_number(self._index, self._run_id)
        text, _agency = complaint_text(self._rng)
        gateway_id = f"bench-{self._run_id}-{self._index}"
        body = {
            "from": to,
            "to": "1708",
            "text": text,
            "gateway_id": gateway_id,
            "received_at": datetime.now(UTC).isoformat(),
        }
        return to, json.dumps(body).encode(), gateway_id

    async def _publish(self, step: str, sent_at: float) -> None:
        to, body, gateway_id = self._next_sms()
        self._track(to, Flight(step, sent_at))
        try:
            await self._js.publish(
                subjects.INBOUND_SMS, body, headers={"Nats-Msg-Id": gateway_id}, timeout=10.0
            )
        except Exception:
            self._untrack(to)
            self._errors[step] = self._errors.get(step, 0) + 1
            if (window := self._window.get(step)) is not None:
                window.release()

    async def open_loop(
        self,
        step: str,
        rate: float,
        duration_s: float,
        *,
        max_backlog: int,
        drain_timeout_s: float,
        progress: Progress | None = None,
    ) -> StepResult:
        """Send at a fixed rate for `duration_s`; stop early if the backlog passes a bound."""
        total = int(rate * duration_s)
        status = StepStatus(step, time.perf_counter(), target=total)
        tasks: set[asyncio.Task[None]] = set()
        stopped_early = False
        ticker = asyncio.create_task(self._tick(status, progress))
        try:
            for i in range(total):
                due = status.started + i / rate
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                if self.inflight(step) > max_backlog:
                    stopped_early = True
                    break
                task = asyncio.create_task(self._publish(step, sent_at=due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                status.sent += 1
            if tasks:
                await asyncio.gather(*tasks)
            await self._drain(step, drain_timeout_s)
        finally:
            ticker.cancel()
        return self._result(step, "open", rate, status, stopped_early, window=None)

    async def closed_loop(
        self,
        step: str,
        window: int,
        duration_s: float,
        *,
        warmup_s: float,
        drain_timeout_s: float,
        progress: Progress | None = None,
    ) -> StepResult:
        """Keep `window` SMS in flight: the rate the pipeline can sustain, no faster."""
        slots = self._window[step] = asyncio.Semaphore(window)
        status = StepStatus(step, time.perf_counter())
        measure_from = status.started + warmup_s
        stop_at = measure_from + duration_s
        tasks: set[asyncio.Task[None]] = set()
        ticker = asyncio.create_task(self._tick(status, progress))
        try:
            while time.perf_counter() < stop_at:
                try:
                    await asyncio.wait_for(
                        slots.acquire(), timeout=max(0.01, stop_at - time.perf_counter())
                    )
                except TimeoutError:
                    break
                task = asyncio.create_task(self._publish(step, sent_at=time.perf_counter()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                status.sent += 1
            if tasks:
                await asyncio.gather(*tasks)
            await self._drain(step, drain_timeout_s)
        finally:
            ticker.cancel()
            self._window.pop(step, None)
        return self._result(step, "closed", None, status, False, window=(measure_from, stop_at))

    async def _drain(self, step: str, timeout_s: float) -> None:
        if not self.inflight(step):
            return
        idle = self._idle[step] = asyncio.Event()
        try:
            await asyncio.wait_for(idle.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            del self._idle[step]

    async def _tick(self, status: StepStatus, progress: Progress | None) -> None:
        while progress is not None:
            status.completed = len(self._done.get(status.step, []))
            progress(status)
            await asyncio.sleep(0.5)

    def forget(self, step: str) -> None:
        """Give up on what is still in flight for a step (counted as missing)."""
        for to in [to for to, f in self._inflight.items() if f.step == step]:
            self._untrack(to)

    def _result(
        self,
        step: str,
        mode: str,
        rate: float | None,
        status: StepStatus,
        stopped_early: bool,
        window: tuple[float, float] | None,
    ) -> StepResult:
        done = self._done.get(step, [])
        missing = self.inflight(step)
        self.forget(step)
        if window is not None:
            # Maximum rate: completions inside the measuring window, after the warm-up.
            chosen = [d for d in done if window[0] <= d.at <= window[1]]
            span = window[1] - window[0]
        else:
            # Fixed rate: everything sent, until its last acknowledgement.
            chosen = done
            span = (max(d.at for d in done) - status.started) if done else 0.0
        throughput = round(len(chosen) / span, 2) if span > 0 else None
        ended = max((d.at for d in done), default=time.perf_counter())
        return StepResult(
            step=step,
            mode=mode,
            offered_per_s=rate,
            sent=status.sent,
            completed=len(done),
            missing=missing,
            publish_errors=self._errors.get(step, 0),
            stopped_early=stopped_early,
            throughput_per_s=throughput,
            latency=latency_summary([d.latency_s * 1000.0 for d in chosen], unanswered=missing),
            window_s=span,
            complaint_ids=[d.complaint_id for d in done if d.complaint_id],
            started=status.started,
            ended=ended,
        )


async def verify_sample(db: Any, complaint_ids: list[str], size: int = 25) -> dict[str, Any]:
    """Check in the database that acknowledged complaints are assigned with deadlines."""
    rng = random.Random(len(complaint_ids))  # noqa: S311 - a sample, not a secret
    sample = rng.sample(complaint_ids, min(size, len(complaint_ids)))
    # One lookup by `_id` each: FerretDB answers those through its index, while an
    # `$in` of them decodes every stored complaint (minutes with a million).
    fields = {"state": 1, "agency": 1, "deadlines": 1}
    docs = await asyncio.gather(*(db.complaints.find_one({"_id": c}, fields) for c in sample))
    problems: list[str] = []
    found = {d["_id"]: d for d in docs if d is not None}
    for cid in sample:
        doc = found.get(cid)
        if doc is None:
            problems.append(f"{cid}: not stored")
            continue
        deadlines = doc.get("deadlines") or {}
        if doc.get("state") != "assigned" or not doc.get("agency"):
            problems.append(f"{cid}: state {doc.get('state')!r}, agency {doc.get('agency')!r}")
        elif not deadlines.get("answer") or not deadlines.get("first_response"):
            problems.append(f"{cid}: deadlines missing")
    return {"checked": len(sample), "ok": len(sample) - len(problems), "problems": problems[:5]}
