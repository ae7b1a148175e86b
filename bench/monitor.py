"""CPU and memory of every process of the stack, sampled by psutil in a thread.

A thread rather than an asyncio task: the load generator's event loop may be
busy exactly when the figures matter, and a late sample would skew CPU %.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

from bench.stats import slope

MB = 1024 * 1024
SYSTEM = "machine"  # every process on the machine, ours and anybody else's
OTHERS = "others"  # the machine minus the processes of the stack and the bench


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    cpu_percent: float  # of one core, since the previous sample (like `top`)
    rss_bytes: int


@dataclass
class ProcessSampler:
    interval_s: float = 1.0
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    _procs: dict[str, psutil.Process] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        proc = psutil.Process(pid)
        proc.cpu_percent(None)  # the first call only sets the baseline
        with self._lock:
            self._procs[name] = proc
            self.samples.setdefault(name, [])

    def forget(self, name: str) -> None:
        with self._lock:
            self._procs.pop(name, None)

    def start(self) -> None:
        psutil.cpu_percent(None)
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            with self._lock:
                procs = list(self._procs.items())
            # In units of one core, like the per-process figures (200% = both of 2 cores).
            machine = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
            used = psutil.virtual_memory().used
            with self._lock:
                self.samples.setdefault(SYSTEM, []).append(Sample(now, machine, used))
            for name, proc in procs:
                try:
                    sample = Sample(now, proc.cpu_percent(None), proc.memory_info().rss)
                except psutil.Error:
                    continue
                with self._lock:
                    self.samples[name].append(sample)

    def window(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """Per process: mean and peak CPU % and peak RSS between two monotonic times."""
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            items = [(n, [s for s in ss if start < s.at <= end]) for n, ss in self.samples.items()]
        for name, chosen in items:
            if not chosen:
                continue
            out[name] = {
                "cpu_mean_pct": round(sum(s.cpu_percent for s in chosen) / len(chosen), 1),
                "cpu_max_pct": round(max(s.cpu_percent for s in chosen), 1),
                "rss_max_mb": round(max(s.rss_bytes for s in chosen) / MB, 1),
            }
        if SYSTEM in out:
            # Other sessions share this machine: their CPU use is part of the record.
            ours = sum(v["cpu_mean_pct"] for k, v in out.items() if k != SYSTEM)
            others = max(0.0, out[SYSTEM]["cpu_mean_pct"] - ours)
            out[OTHERS] = {"cpu_mean_pct": round(others, 1), "cpu_max_pct": 0.0, "rss_max_mb": 0.0}
        return out

    def rss_series(self, name: str, start: float, every_s: float) -> list[tuple[float, float]]:
        """(seconds since start, RSS MB) about every `every_s` seconds."""
        with self._lock:
            chosen = [s for s in self.samples.get(name, []) if s.at >= start]
        series: list[tuple[float, float]] = []
        for s in chosen:
            if not series or s.at - start - series[-1][0] >= every_s - self.interval_s / 2:
                series.append((round(s.at - start, 1), round(s.rss_bytes / MB, 2)))
        return series


def rss_slope_mb_per_min(series: list[tuple[float, float]]) -> float | None:
    value = slope(series)
    return None if value is None else round(value * 60.0, 3)
