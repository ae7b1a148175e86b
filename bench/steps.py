"""The measured steps of a run: a fixed rate (open loop), the maximum (a bounded
window in flight, closed loop), the counted step at half the maximum, and the
idle background; each step is settled (sample checked, backlog cut) and reported."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench import counters
from bench.figures import Figures
from bench.load import StepResult, verify_sample


class Steps(Figures):
    async def _open(self, step: str, rate: float, seconds: float, keep: bool = True) -> StepResult:
        assert self.driver is not None
        stored = await self._stored()
        with self.ui.phase(f"fixed rate {step}", total=int(rate * seconds)) as progress:
            result = await self.driver.open_loop(
                step,
                rate,
                seconds,
                max_backlog=max(20, int(self.config.backlog_s * rate)),
                drain_timeout_s=self.config.drain_timeout_s,
                progress=progress,
            )
        await self._settle(result)
        await self._report(result, stored, keep)
        return result

    async def _closed(self, step: str, seconds: float, keep: bool = True) -> StepResult:
        assert self.driver is not None
        stored = await self._stored()
        with self.ui.phase(f"maximum rate: {step}") as progress:
            result = await self.driver.closed_loop(
                step,
                self.config.window,
                seconds,
                warmup_s=self.config.warmup_s,
                drain_timeout_s=self.config.drain_timeout_s,
                progress=progress,
            )
        await self._settle(result)
        await self._report(result, stored, keep)
        return result

    async def _stored(self) -> int:
        """Complaints stored: counted once, then what the bench seeded and the pipeline
        acknowledged since (a lower bound). On FerretDB a count decodes every document,
        eight minutes with a million stored, and would weigh on the next figure."""
        if self.stored_at_start is None:
            self.stored_at_start = int(await self.db.complaints.estimated_document_count())
        return self.stored_at_start + self.seeded + self.acknowledged

    async def _settle(self, result: StepResult) -> None:
        """Check a sample of stored complaints, then cut what a saturated step left behind.

        SMS still unanswered after the drain are purged from the pipeline's
        streams, with the events of complaints half-way through, so the next
        step starts from an idle pipeline instead of inheriting a backlog that
        would take minutes to clear; they count as unanswered. The sample is
        checked first: intake records the deadlines from the same event that
        notify acknowledges, so under load it may lag the acknowledgement.
        """
        if not result.missing:
            result.idle_after = await self._wait_idle(self.config.idle_timeout_s)
        result.verified = await self._verify(result.complaint_ids)
        if result.missing:
            for stream in counters.PIPELINE_STREAMS:
                with contextlib.suppress(Exception):
                    await self.js.purge_stream(stream)
            result.purged = True
            result.idle_after = await self._wait_idle(self.config.idle_timeout_s)

    async def _verify(self, complaint_ids: list[str], timeout_s: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            checked = await verify_sample(self.db, complaint_ids)
            if checked["ok"] == checked["checked"] or time.monotonic() > deadline:
                return checked
            await asyncio.sleep(2.0)

    async def _wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            backlog = await counters.consumer_backlog(self.js)
            if not any(backlog.values()):
                await asyncio.sleep(1.0)  # the last handlers' final writes
                return True
            await asyncio.sleep(0.5)
        return False

    async def _report(self, result: StepResult, stored: int, keep: bool) -> None:
        """Resources and one line for the watcher."""
        self.acknowledged += result.completed
        resources = self.sampler.window(result.started, result.ended)
        self.result.setdefault("resources", {})[result.step] = resources
        checked = result.verified
        entry = {
            **result.as_json(),
            "stored_before": stored,
            "others_cpu_pct": (resources.get("others") or {}).get("cpu_mean_pct"),
            "verified": checked,
        }
        if keep:
            self.steps.append(entry)
        lat = result.latency
        self.ui.note(
            f"  {result.step}: {result.completed}/{result.sent} acknowledged, "
            f"{result.throughput_per_s} /s, p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms"
            + (", stopped sending (backlog)" if result.stopped_early else "")
            + (f", {result.missing} unanswered (purged)" if result.missing else "")
            + ("" if result.idle_after else ", pipeline still busy")
            + f"; {checked['ok']}/{checked['checked']} sampled complaints assigned with deadlines"
        )

    async def _max_rate(self) -> StepResult:
        backlog_peak: dict[str, int] = {}
        sampling = asyncio.create_task(self._sample_backlog(backlog_peak))
        try:
            result = await self._closed("max", self.config.max_s)
        finally:
            sampling.cancel()
        self.result["backlog_peak_at_max"] = backlog_peak
        return result

    async def _sample_backlog(self, peak: dict[str, int]) -> None:
        while True:
            with contextlib.suppress(Exception):
                for name, value in (await counters.consumer_backlog(self.js)).items():
                    peak[name] = max(peak.get(name, 0), value)
            await asyncio.sleep(1.0)

    async def _counted(self, maximum: StepResult) -> StepResult:
        """Half the capacity at a fixed rate, with every command and message counted."""
        assert self.driver is not None
        rate = max(1.0, round(0.5 * (maximum.throughput_per_s or 2.0), 1))
        step = f"{rate:g}/s (half of max)"
        stored = await self._stored()
        db_before = await counters.command_counts(self.mongo)
        census_before = counters.census(self.bench.census_dir)
        statements_before = counters.census(self.bench.census_dir, "statements")
        js_before = await counters.jetstream_counts(self.js)
        with self.ui.phase(f"fixed rate {step}", total=int(rate * self.config.step_s)) as progress:
            result = await self.driver.open_loop(
                step,
                rate,
                self.config.step_s,
                max_backlog=max(20, int(self.config.backlog_s * rate)),
                drain_timeout_s=self.config.drain_timeout_s,
                progress=progress,
            )
        # Counters first: the sample check reads the database too.
        if not result.missing:
            result.idle_after = await self._wait_idle(self.config.idle_timeout_s)
        await asyncio.sleep(1.5)  # the census files are rewritten every second
        db_delta = counters.count_delta(db_before, await counters.command_counts(self.mongo))
        census = counters.census_delta(census_before, counters.census(self.bench.census_dir))
        statements = counters.census_delta(
            statements_before, counters.census(self.bench.census_dir, "statements")
        )
        js_delta = counters.count_delta(js_before, await counters.jetstream_counts(self.js))
        await self._settle(result)
        self._db_ops(db_delta, census, result, maximum)
        self._statements(statements, result)
        self._messages(js_delta, result, maximum)
        await self._report(result, stored, keep=True)
        return result

    async def _background(self, label: str, seconds: float = 10.0) -> None:
        """Database commands the services send with no traffic (sweeps, retries)."""
        await self._wait_idle(self.config.idle_timeout_s)
        before_db = await counters.command_counts(self.mongo)
        before = counters.census(self.bench.census_dir)
        await asyncio.sleep(seconds + 1.0)
        after = counters.census(self.bench.census_dir)
        after_db = await counters.command_counts(self.mongo)
        delta = counters.census_delta(before, after)
        self.result.setdefault("background_db", {})[label] = {
            "seconds": seconds,
            "stored": await self._stored(),
            "commands_per_s": round(
                sum(counters.count_delta(before_db, after_db).values()) / (seconds + 1.0), 2
            ),
            "by_service": {
                service: {k: round(v / (seconds + 1.0), 2) for k, v in counts.items()}
                for service, counts in delta.items()
            },
        }
