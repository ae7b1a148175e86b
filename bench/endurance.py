"""Phases beyond the steady steps: a second replica of intake and router, the
soak with its memory slopes, and the profiles (py-spy under load, cProfile of
one service)."""

from __future__ import annotations

import asyncio
import contextlib
import pstats
import time
from typing import Any

from bench.load import StepResult
from bench.monitor import rss_slope_mb_per_min
from bench.profile import summarize_collapsed
from bench.run_state import SERVICES
from bench.stats import ratio
from bench.steps import Steps

# The soak runs at this share of the capacity: it adds thousands of complaints
# and the sustainable rate falls as they are stored (BENCHMARKS.md), so half
# of the capacity measured at the start would run into the backlog bound.
SOAK_SHARE = 1 / 3


class Endurance(Steps):
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
