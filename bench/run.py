"""One benchmark run, phase by phase, against one stack; the result document at the end.

Order of the phases, and why:
1. warm-up (connections, consumers, caches);
2. maximum rate (a bounded window of SMS in flight): the capacity;
3. half of that capacity, at a fixed rate: latency at a sustainable load, and
   the exact count of database commands and bus messages per complaint;
4. fixed rates: half the target and the target (20 and 40/s by default);
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
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from pymongo import AsyncMongoClient

from bench.endurance import Endurance
from bench.limits import Limits
from bench.load import LoadDriver
from bench.results import HEADLINE, OPTIONAL_FIGURES, SCHEMA, TARGETS, target_met
from bench.run_state import SCALES, Config, Ui
from bench.scale_points import ScalePoints, complaints_refreshed_at
from bench.stack import ferretdb_module_version, machine_info

__all__ = ["SCALES", "Config", "Run", "Ui", "complaints_refreshed_at"]


class Run(Limits, Endurance, ScalePoints):
    """The phases in their order; each phase's code lives in the class it comes from."""

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
        self._headline([steady, *fixed], maximum, steady)
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
