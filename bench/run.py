"""One benchmark run, phase by phase, against one stack; the result document at the end.

Order of the phases, and why:
1. warm-up (connections, consumers, caches);
2. maximum rate (a bounded window of SMS in flight): the capacity;
3. half of that capacity, at a fixed rate: latency at a sustainable load, and
   the exact count of database commands and bus messages per complaint;
4. the issue's fixed rates (50, 100, 200, 300/s by default);
5. two replicas of intake and router against one;
6. raw limits of the same servers with the same clients;
7. soak (SOAK=seconds), then the stored-data sizes (10k, and 1M with SCALE=1m),
   last because seeding makes every later phase slower on FerretDB.
Every phase is bounded in time: a step that cannot keep up stops sending once
its backlog passes `backlog_s` seconds of its rate, waits `drain_timeout_s` for
acknowledgements, then purges what intake has not read yet (counted as
unanswered) and waits at most `idle_timeout_s` for the pipeline to go idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import pstats
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from bench import counters, raw, scale
from bench.load import LoadDriver, StepResult, StepStatus, verify_sample
from bench.monitor import ProcessSampler, rss_slope_mb_per_min
from bench.profile import summarize_collapsed
from bench.results import HEADLINE, OPTIONAL_FIGURES, SCHEMA, TARGETS, target_met
from bench.stack import BenchStack, ferretdb_module_version, machine_info
from bench.stats import ratio, weighted_rate
from bench.texts import complaint_text
from services.intake.complaint_counts import COUNTS, RECONCILED_DOC, MongoCountStore, read_figures
from tools.devstack import ROOT, Stack, free_port, quiet_sink

SCALES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
TARGET_RATE = 300.0
P99_LIMIT_MS = 1000.0
# The soak runs at this share of the capacity: it adds thousands of complaints
# and the sustainable rate falls as they are stored (BENCHMARKS.md), so half
# of the capacity measured at the start would run into the backlog bound.
SOAK_SHARE = 1 / 3
# How long a stored-data point waits for intake's first gauge refresh after a start.
REFRESH_WAIT_S = 1200.0
# How long the age of intake's complaint gauges is sampled at each stored-data size:
# two and a half of its refresh intervals (30 s), so the oldest a scrape sees is in.
GAUGE_AGE_SAMPLE_S = 75.0
GAUGE_AGE_LIMIT_S = 60.0
SERVICES = ("intake", "router", "sla", "notify")
# Which raw measurement stands for each database command of the pipeline;
# reads of any kind (find, aggregate, count, getMore) are priced as a find.
RAW_FOR_COMMAND = {"insert": "insert", "update": "update", "findAndModify": "findAndModify"}


@dataclass
class Config:
    scale: str = "10k"
    soak_s: int = 0
    rates: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0, 300.0])
    step_s: float = 30.0
    max_s: float = 30.0
    warmup_s: float = 5.0
    window: int = 32
    backlog_s: float = 2.0
    drain_timeout_s: float = 30.0
    idle_timeout_s: float = 30.0
    raw_s: float = 5.0
    scale_s: float = 30.0
    replicas: bool = True
    census: bool = True
    mongo_db: str = "lapor_bench"
    out_dir: Path = Path("bench/results")
    cprofile: str | None = None
    py_spy: str | None = None
    keep_data: bool = False
    command: str = "make bench"


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


class Ui:
    """What the run tells the person watching it; the CLI gives a rich implementation."""

    def note(self, text: str) -> None:
        print(text, flush=True)

    @contextlib.contextmanager
    def phase(self, title: str, total: int | None = None) -> Iterator[Callable[[StepStatus], None]]:
        self.note(title)
        yield lambda _status: None


@dataclass
class Run:
    config: Config
    ui: Ui
    bench: BenchStack
    sampler: ProcessSampler = field(default_factory=ProcessSampler)
    result: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    seeded: int = 0
    seeded_timers: int = 0
    acknowledged: int = 0
    stored_at_start: int | None = None
    nc: Any = None
    mongo: Any = None
    driver: LoadDriver | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def execute(self) -> dict[str, Any]:
        started = datetime.now(UTC)
        self.ui.note(f"stack: {self.bench.workdir}")
        try:
            with self.ui.phase("starting nats-server, FerretDB and the four services"):
                await asyncio.to_thread(self.bench.start)
            await self._connect()
            await self._collect_versions()
            self._watch()
            self.sampler.start()
            # A failure mid-run still leaves a result with what was measured.
            await self._guarded("run", self._phases())
        finally:
            self.sampler.stop()
            await self._disconnect()
            await asyncio.to_thread(self.bench.stop)
            if not self.config.keep_data:
                self.bench.drop_data()
        self._cprofile_report()
        return self._document(started)

    async def _connect(self) -> None:
        self.nc = await nats.connect(self.bench.stack.nats, name="lapor-bench")
        self.mongo = AsyncMongoClient(self.bench.stack.mongo, tz_aware=True, appname="lapor-bench")
        self.driver = LoadDriver(self.nc, run_id=int(time.time()) % 80 + 1)
        await self.driver.attach()

    async def _disconnect(self) -> None:
        if self.driver is not None:
            with contextlib.suppress(Exception):
                await self.driver.detach()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.mongo is not None:
            await self.mongo.close()

    def _watch(self) -> None:
        self.sampler.watch("bench", os.getpid())
        for name, pid in self.bench.pids().items():
            self.sampler.watch(name, pid)

    @property
    def db(self) -> Any:
        return self.mongo[self.config.mongo_db]

    @property
    def js(self) -> Any:
        return self.nc.jetstream()

    # -- phases --------------------------------------------------------------------
    async def _phases(self) -> None:
        c = self.config
        await self._open("warm-up", 5.0, 4.0, keep=False)
        maximum = await self._max_rate()
        await self._background("idle, after the maximum")
        # Right after the maximum, while the stored data are the same size.
        if c.replicas:
            await self._guarded("replicas", self._replicas(maximum))
        else:
            self.reasons["replica_ratio_2_vs_1"] = "disabled (--no-replicas)"
        await self._raw_limits()
        self._routing_cost()
        steady = await self._counted(maximum)
        self._ratios()
        fixed = [await self._open(f"{rate:g}/s", rate, c.step_s) for rate in c.rates]
        self._headline([steady, *fixed], maximum)
        if c.py_spy:
            await self._guarded("py-spy", self._py_spy())
        if c.soak_s > 0:
            await self._guarded("soak", self._soak(maximum))
        else:
            self.reasons["soak_rss_slope_mb_per_min_max"] = "soak not requested (SOAK=seconds)"
        for label, size in SCALES.items():
            if size <= SCALES[c.scale]:
                await self._guarded(f"scale {label}", self._scale_point(label))
        await self._background("idle, after seeding")
        self._scale_ratios()
        self._gauge_ages()

    async def _guarded(self, phase: str, work: Awaitable[None]) -> None:
        """An optional phase that fails is recorded; the figures measured so far are kept."""
        try:
            await work
        except Exception as exc:
            self.result.setdefault("errors", {})[phase] = f"{type(exc).__name__}: {exc}"[:500]
            self.ui.note(f"  {phase} failed: {type(exc).__name__}: {str(exc)[:200]}")

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
        js_delta = counters.count_delta(js_before, await counters.jetstream_counts(self.js))
        await self._settle(result)
        self._db_ops(db_delta, census, result, maximum)
        self._messages(js_delta, result, maximum)
        await self._report(result, stored, keep=True)
        return result

    # -- figures -------------------------------------------------------------------
    def _headline(self, steps: list[StepResult], maximum: StepResult) -> None:
        self.result["e2e_complaints_per_s"] = maximum.throughput_per_s
        if maximum.throughput_per_s is None:
            self.reasons["e2e_complaints_per_s"] = "no acknowledgement arrived"
        at_target = next((s for s in steps if s.offered_per_s == TARGET_RATE), None)
        if at_target is None:
            self.reasons["e2e_p99_ms"] = f"no fixed-rate step at {TARGET_RATE:g}/s"
        else:
            self.result["e2e_p99_ms"] = at_target.latency["p99_ms"]
            if at_target.latency["p99_ms"] is None:
                self.reasons["e2e_p99_ms"] = (
                    f"unknown, above every measured latency: {at_target.missing} of "
                    f"{at_target.sent} SMS sent at {TARGET_RATE:g}/s got no acknowledgement "
                    f"within the step and {self.config.drain_timeout_s:g} s of draining"
                )
        sustained = [
            s.offered_per_s
            for s in steps
            if s.offered_per_s
            and not s.stopped_early
            and s.missing == 0
            and (s.throughput_per_s or 0) >= 0.95 * s.offered_per_s
            and (s.latency["p99_ms"] or 1e12) <= P99_LIMIT_MS
        ]
        self.result["e2e_sustained_per_s"] = max(sustained) if sustained else None
        if not sustained:
            self.reasons["e2e_sustained_per_s"] = "no fixed rate kept up with p99 <= 1 s"

    def _db_ops(
        self,
        delta: dict[str, int],
        census: dict[str, dict[str, int]],
        counted: StepResult,
        maximum: StepResult,
    ) -> None:
        n = counted.completed
        per = {k: round(v / n, 2) for k, v in delta.items() if v} if n else {}
        total = round(sum(per.values()), 2) if per else None
        at_max = maximum.throughput_per_s
        self.result["db_ops"] = {
            "counted_by": (
                "serverStatus metrics.commands.<name>.total before and after the fixed-rate "
                "step at half the maximum, divided by the complaints acknowledged in it"
            ),
            "step": counted.step,
            "complaints": n,
            "exact": counted.missing == 0 and counted.idle_after,
            "commands": delta,
            "per_complaint": per,
            "total_per_complaint": total,
            "per_complaint_by_service": {
                service: {k: round(v / n, 2) for k, v in counts.items()}
                for service, counts in census.items()
            }
            if n
            else {},
            "pipeline_ops_per_s": round(total * at_max, 1) if total and at_max else None,
        }

    def _messages(self, delta: dict[str, int], counted: StepResult, maximum: StepResult) -> None:
        totals = counters.message_totals(delta)
        n = counted.completed
        rate = maximum.throughput_per_s or 0.0
        published = totals["published"] / n if n else None
        delivered = totals["delivered"] / n if n else None
        self.result["messages"] = {
            "delta": delta,
            "published_per_complaint": round(published, 2) if published else None,
            "delivered_per_complaint": round(delivered, 2) if delivered else None,
            "pipeline_published_per_s": round(published * rate, 1) if published else None,
            "pipeline_delivered_per_s": round(delivered * rate, 1) if delivered else None,
        }

    async def _raw_limits(self) -> None:
        c = self.config
        size = await self._stored()
        with self.ui.phase("raw limits: JetStream publish and consume (nats-py)"):
            raw_nats = await raw.nats_limits(self.nc, c.raw_s)
        with self.ui.phase(f"raw limits: single-document operations on {size:,} documents"):
            data_dir = None if self.bench.stack.mongo_url else self.bench.workdir / "ferretdb"
            raw_db = await raw.db_limits(
                self.mongo, f"{c.mongo_db}_raw", c.raw_s, size=size, ferretdb_dir=data_dir
            )
        self.result["raw"] = {"nats": raw_nats, "db": raw_db}
        await self._sync_always_cost(raw_nats)
        self.ui.note(
            f"  raw: publish {raw_nats['publish']['per_s']}/s, consume+ack "
            f"{raw_nats['consume_ack']['per_s']}/s, insert {raw_db['insert']['per_s']}/s, "
            f"update {raw_db['update']['per_s']}/s, findAndModify "
            f"{raw_db['findAndModify']['per_s']}/s, find {raw_db['find']['per_s']}/s"
        )

    def _routing_cost(self, texts: int = 2000) -> None:
        """What one routing decision costs in the router's own code, without the bus:
        the directory and lexicon loaded once, then `Router.decide` per text."""
        from services.router.domain import Router

        with self.ui.phase("routing: cost of one decision (Router.decide)"):
            start = time.perf_counter()
            router = Router.load(ROOT / "data" / "regions" / "banjar")
            load_ms = (time.perf_counter() - start) * 1000.0
            rng = random.Random(7)  # noqa: S311 - load data, not secrets
            sample = [complaint_text(rng)[0].split(" ", 1)[1] for _ in range(texts)]
            for text in sample[:200]:  # token caches warm, as in a running service
                router.decide(text)
            costs = []
            for text in sample:
                t0 = time.perf_counter_ns()
                router.decide(text)
                costs.append((time.perf_counter_ns() - t0) / 1000.0)
        costs.sort()
        self.result["routing"] = {
            "decisions": len(costs),
            "load_ms": round(load_ms, 1),
            "median_us": round(costs[len(costs) // 2], 1),
            "p99_us": round(costs[int(len(costs) * 0.99)], 1),
            "max_us": round(costs[-1], 1),
        }
        self.ui.note(
            f"  routing: {self.result['routing']['median_us']} µs median, "
            f"{self.result['routing']['p99_us']} µs p99 per decision (load {load_ms:.0f} ms)"
        )

    async def _sync_always_cost(self, raw_nats: dict[str, Any]) -> None:
        """The durability setting production uses (`sync_interval: always`: fsync before
        every ack), priced on a second local nats-server: same client, same stream."""
        if self.bench.stack.nats_url is not None:
            self.reasons["sync_always_publish_ratio"] = (
                "external NATS_URL: its settings are not ours"
            )
            return
        synced = Stack(
            workdir=self.bench.workdir / "nats-sync-always",
            nats_port=free_port(),
            nats_sync_always=True,
            sink=quiet_sink,
        )
        with self.ui.phase("raw limits: JetStream with sync_interval: always"):
            synced.start_nats()
            try:
                nc = await nats.connect(synced.nats, name="lapor-bench-sync")
                try:
                    limits = await raw.nats_limits(nc, self.config.raw_s)
                finally:
                    await nc.close()
            finally:
                synced.stop()
        self.result["raw"]["nats_sync_always"] = limits
        self.result["sync_always_publish_ratio"] = ratio(
            limits["publish"]["per_s"], raw_nats["publish"]["per_s"]
        )
        self.ui.note(
            f"  sync_interval always: publish {limits['publish']['per_s']}/s "
            f"(sequential {limits['publish']['sequential_per_s']}/s) against "
            f"{raw_nats['publish']['per_s']}/s by default"
        )

    def _ratios(self) -> None:
        """Pipeline rates (per-complaint counts x maximum throughput) against the raw rates."""
        raw_db = self.result["raw"]["db"]
        raw_nats = self.result["raw"]["nats"]
        db_ops = self.result["db_ops"]
        rates = {k: raw_db[k]["per_s"] for k in ("insert", "update", "findAndModify", "find")}
        mix: dict[str, float] = {}
        for command, n in db_ops["per_complaint"].items():
            kind = RAW_FOR_COMMAND.get(command, "find")
            mix[kind] = mix.get(kind, 0.0) + n
        raw_mix = weighted_rate(mix, rates)
        db_ops["raw_mix_ops_per_s"] = round(raw_mix, 1) if raw_mix else None
        self.result["db_ops_ratio"] = ratio(db_ops["pipeline_ops_per_s"], raw_mix)
        if self.result["db_ops_ratio"] is None:
            self.reasons["db_ops_ratio"] = "no database operations were counted"
        msgs = self.result["messages"]
        msgs["raw_publish_per_s"] = raw_nats["publish"]["per_s"]
        msgs["raw_consume_per_s"] = raw_nats["consume_ack"]["per_s"]
        self.result["msg_publish_ratio"] = ratio(
            msgs["pipeline_published_per_s"], msgs["raw_publish_per_s"]
        )
        self.result["msg_consume_ratio"] = ratio(
            msgs["pipeline_delivered_per_s"], msgs["raw_consume_per_s"]
        )

    async def _replicas(self, single: StepResult) -> None:
        with self.ui.phase("starting a second intake and router on the same durable consumers"):
            for service in ("intake", "router"):
                name = await asyncio.to_thread(self.bench.add_replica, service)
                self.sampler.watch(name, self.bench.pids()[name])
        try:
            double = await self._closed("max, 2 replicas", self.config.max_s)
        finally:
            for name in list(self.bench.replicas):
                self.sampler.forget(name)
            await asyncio.to_thread(self.bench.stop_replicas)
        self.result["replicas"] = {
            "replicated": ["intake", "router"],
            "one": {
                "throughput_per_s": single.throughput_per_s,
                "p99_ms": single.latency["p99_ms"],
            },
            "two": {
                "throughput_per_s": double.throughput_per_s,
                "p99_ms": double.latency["p99_ms"],
            },
        }
        self.result["replica_ratio_2_vs_1"] = ratio(
            double.throughput_per_s, single.throughput_per_s
        )

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

    def _gauge_ages(self) -> None:
        points = self.result.get("scale", {})
        for label in SCALES:
            key = f"gauges_age_s_at_{label}"
            age = ((points.get(label) or {}).get("gauges") or {}).get("age_s_max")
            self.result[key] = age
            if age is not None or label != "1m":
                continue
            failed = (self.result.get("errors") or {}).get(f"scale {label}")
            if failed:
                self.reasons[key] = f"{label} point failed: {failed}"
            elif label not in points:
                self.reasons[key] = f"{label} point not requested (make bench SCALE={label})"
            else:
                self.reasons[key] = "intake's /metrics showed no complaint refresh"

    def _scale_ratios(self) -> None:
        points = self.result.get("scale", {})
        base = (points.get("10k") or {}).get("throughput_per_s")
        for label in ("100k", "1m"):
            key = f"scale_ratio_{label}_vs_10k"
            if label not in points:
                failed = (self.result.get("errors") or {}).get(f"scale {label}")
                self.reasons[key] = (
                    f"{label} point failed: {failed}"
                    if failed
                    else f"{label} point not requested (make bench SCALE={label})"
                )
                continue
            unsettled = [
                n for n in ("10k", label) if (points.get(n) or {}).get("first_refresh_s") is None
            ]
            if unsettled:
                # Measured while intake was still reading every complaint: not settled.
                self.reasons[key] = (
                    f"intake's first gauge refresh with {unsettled[-1]} stored did not "
                    f"finish within {REFRESH_WAIT_S:.0f} s"
                )
                continue
            self.result[key] = ratio(points[label]["throughput_per_s"], base)
            if self.result[key] is None:
                self.reasons[key] = f"throughput with 10k stored was {base}/s: no base"

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

    async def _soak(self, maximum: StepResult) -> None:
        rate = max(1.0, round(SOAK_SHARE * (maximum.throughput_per_s or 3.0), 1))
        start = time.monotonic()
        soak = await self._open(f"soak {rate:g}/s", rate, float(self.config.soak_s))
        per_process: dict[str, Any] = {}
        for name in (*SERVICES, "nats", "ferretdb"):
            series = self.sampler.rss_series(name, start, every_s=10.0)
            per_process[name] = {
                "slope_mb_per_min": rss_slope_mb_per_min(series),
                "rss_mb_every_10s": series,
            }
        slopes = [
            v["slope_mb_per_min"]
            for k, v in per_process.items()
            if k in SERVICES and v["slope_mb_per_min"] is not None
        ]
        self.result["soak"] = {
            "rate_per_s": rate,
            "seconds": self.config.soak_s,
            "acknowledged": soak.completed,
            "rss": per_process,
        }
        self.result["soak_rss_slope_mb_per_min_max"] = max(slopes) if slopes else None
        if not slopes:
            self.reasons["soak_rss_slope_mb_per_min_max"] = "too few RSS samples"

    # -- profiling -----------------------------------------------------------------
    async def _py_spy(self) -> None:
        """Sample every service with py-spy under the maximum load (not part of any figure)."""
        assert self.config.py_spy is not None
        seconds = int(self.config.max_s)
        procs = []
        for name in SERVICES:
            out = self.bench.workdir / f"py-spy-{name}.txt"
            pid = str(self.bench.pids()[name])
            proc = await asyncio.create_subprocess_exec(
                self.config.py_spy,
                *("record", "--pid", pid, "--duration", str(seconds), "--rate", "50"),
                *("--format", "raw", "--nonblocking", "--output", str(out)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            procs.append((name, out, proc))
        await self._closed("max, profiled (py-spy)", float(seconds), keep=False)
        summary: dict[str, Any] = {}
        for name, out, proc in procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 60)
            if out.exists():
                summary[name] = summarize_collapsed(out.read_text())
        self.result["profile"] = {"tool": "py-spy", "seconds": seconds, "services": summary}

    def _cprofile_report(self) -> None:
        if not self.config.cprofile:
            return
        path = self.bench.profile_path(self.config.cprofile)
        if not path.exists():
            self.result["cprofile"] = {"service": self.config.cprofile, "error": "no profile"}
            return
        text = path.with_suffix(".txt")
        with text.open("w") as stream:
            stats = pstats.Stats(str(path), stream=stream)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(40)
        self.result["cprofile"] = {
            "service": self.config.cprofile,
            "profile": str(path),
            "report": str(text),
        }

    # -- the document --------------------------------------------------------------
    async def _collect_versions(self) -> None:
        info = await self.mongo.admin.command("buildInfo")
        reported = info.get("ferretdbVersion")
        if reported is None:  # a real MongoDB
            ferretdb = None
        elif reported != "unknown":
            ferretdb = reported
        else:
            # The embedded build carries no version file; go.mod pins the module.
            ferretdb = ferretdb_module_version()
        self.versions = {
            "nats_server": _version_text(self.nc.connected_server_version),
            "ferretdb": ferretdb,
            "mongodb_protocol": info.get("version"),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        }

    def _document(self, started: datetime) -> dict[str, Any]:
        figures = {key: self.result.pop(key, None) for key in (*HEADLINE, *OPTIONAL_FIGURES)}
        for key, value in figures.items():
            if value is None:
                self.reasons.setdefault(key, "not measured in this run")
        return {
            "schema": SCHEMA,
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": self.config.command,
            **figures,
            "null_reasons": {k: v for k, v in self.reasons.items() if figures.get(k) is None},
            "targets": {
                key: {**t, "met": target_met(key, figures.get(key))} for key, t in TARGETS.items()
            },
            "versions": self.versions,
            "machine": machine_info(),
            "external_servers": {
                "nats": self.bench.stack.nats_url is not None,
                "mongo": self.bench.stack.mongo_url is not None,
            },
            "config": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in self.config.__dict__.items()
                if k != "command"
            },
            "e2e": {"steps": self.steps},
            **self.result,
        }


def _version_text(version: Any) -> str:
    text = f"{version.major}.{version.minor}.{version.patch}"
    return f"{text}-{version.dev}" if getattr(version, "dev", "") else text
