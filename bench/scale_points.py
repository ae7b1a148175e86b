"""One stored-data point: the services stopped, complaints seeded up to the size,
the SLA sweep query timed, then the maximum rate just after the start and once
intake's first gauge refresh is done, and the age of its complaint gauges."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import scale
from bench.load import StepStatus
from bench.run_state import REFRESH_WAIT_S, SCALES
from bench.steps import Steps
from services.intake.complaint_counts import COUNTS, RECONCILED_DOC, MongoCountStore, read_figures

# How long the age of intake's complaint gauges is sampled at each stored-data size:
# two and a half of its refresh intervals (30 s), so the oldest a scrape sees is in.
GAUGE_AGE_SAMPLE_S = 75.0
GAUGE_AGE_LIMIT_S = 60.0


def complaints_refreshed_at(metrics_text: str) -> float | None:
    """When intake last refreshed its complaint gauges, from a scrape of its /metrics
    (`lapor_metrics_refresh_timestamp_seconds{part="complaints"}`)."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "lapor_metrics_refresh_timestamp_seconds"
                and sample.labels.get("part") == "complaints"
            ):
                return float(sample.value)
    return None


class ScalePoints(Steps):
    async def _scale_point(self, label: str) -> None:
        target = SCALES[label]
        stored = await self._stored()
        count = max(0, target - stored)
        # A bulk load goes into a database the services are not reading: on SQLite,
        # their reads overlapping the load keep the write-ahead log from being
        # checkpointed, and it grows by gigabytes a minute (BENCHMARKS.md).
        with self.ui.phase("stopping the services for the bulk load"):
            await asyncio.to_thread(self.bench.stop_services)
        with self.ui.phase(f"seeding {count:,} complaints (to {target:,})", total=count) as bar:
            status = StepStatus(f"seed {label}", time.perf_counter(), target=count)

            def report(done: int, _total: int) -> None:
                status.sent = status.completed = done
                bar(status)

            seeded = await scale.seed(self.db, self.seeded, count, progress=report)
        self.seeded += count
        self.seeded_timers += seeded["timers"]
        with self.ui.phase("timing the SLA sweep query"):
            sweep = await scale.sweep_times(self.db, self.seeded_timers)
        restarted = time.time()
        with self.ui.phase("starting the services again"):
            await asyncio.to_thread(self.bench.start_services)
        self._watch()
        # Measured twice: while intake's first gauge refresh after the start may
        # still be reading every stored complaint, and once it is done, which is
        # how a long-running service spends most of its time (the refresh then
        # takes at most a tenth of it). The ratios use the second.
        cold = await self._closed(f"max, {label} stored, just started", self.config.scale_s)
        with self.ui.phase("waiting for intake's first gauge refresh"):
            refresh_s = await self._first_refresh(restarted, REFRESH_WAIT_S)
        point = await self._closed(f"max, {label} stored", self.config.scale_s)
        with self.ui.phase(f"sampling the age of intake's complaint gauges ({label} stored)"):
            gauges = await self._gauges()
        self.result.setdefault("scale", {})[label] = {
            "stored": await self._stored(),
            "seeding": seeded,
            "sweep": sweep,
            "throughput_per_s": point.throughput_per_s,
            "acknowledged": point.completed,
            "p99_ms": point.latency["p99_ms"],
            "first_refresh_s": refresh_s,
            "gauges": gauges,
            "just_started": {
                "throughput_per_s": cold.throughput_per_s,
                "acknowledged": cold.completed,
                "p99_ms": cold.latency["p99_ms"],
            },
        }
        self.ui.note(
            f"  sweep query with {sweep['seeded_timers']:,} seeded timers: few due "
            f"{sweep['few_due']['median_ms']} ms ({sweep['few_due']['returned']} due), "
            f"all open {sweep['all_open'].get('median_ms', sweep['all_open'].get('skipped'))} ms"
        )

    async def _first_refresh(self, since: float, timeout_s: float) -> float | None:
        """Seconds from `since` (epoch) until intake's complaint gauges were refreshed,
        read from its own /metrics; None if not within `timeout_s`."""
        url = self.bench.stack.url("intake") + "/metrics"
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=10.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    refreshed = complaints_refreshed_at((await client.get(url)).text)
                    if refreshed is not None and refreshed >= since:
                        return round(refreshed - since, 1)
                await asyncio.sleep(2.0)
        return None

    async def _gauges(self) -> dict[str, Any]:
        """How old intake's complaint gauges are, as a scrape of its /metrics sees them
        (`lapor_metrics_refresh_timestamp_seconds{part="complaints"}`, sampled each
        second over GAUGE_AGE_SAMPLE_S), what reading their counters costs here, and
        the last reconciliation of the counters with a recount."""
        url = self.bench.stack.url("intake") + "/metrics"
        ages: list[float] = []
        until = time.monotonic() + GAUGE_AGE_SAMPLE_S
        async with httpx.AsyncClient(timeout=10.0) as client:
            while time.monotonic() < until:
                with contextlib.suppress(httpx.HTTPError):
                    refreshed = complaints_refreshed_at((await client.get(url)).text)
                    if refreshed is not None:
                        ages.append(time.time() - refreshed)
                await asyncio.sleep(1.0)
        reads: list[float] = []
        store = MongoCountStore(self.db)
        for _ in range(5):
            start = time.perf_counter()
            await read_figures(store, datetime.now(UTC))
            reads.append((time.perf_counter() - start) * 1000.0)
        reconciled = await self.db[COUNTS].find_one({"_id": RECONCILED_DOC}, {"_id": 0})
        return {
            "age_s_max": round(max(ages), 1) if ages else None,
            "age_s_median": round(statistics.median(ages), 1) if ages else None,
            "samples": len(ages),
            "read_ms_median": round(statistics.median(reads), 1),
            "last_reconciliation": reconciled,
        }
