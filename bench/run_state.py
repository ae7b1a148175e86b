"""What every phase of a benchmark run shares: its settings, the watcher's view,
and the state the phases fill in (connections, counts, the figures so far)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import LoadDriver, StepStatus
from bench.monitor import ProcessSampler
from bench.stack import BenchStack

SCALES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
SERVICES = ("intake", "router", "sla", "notify")
# How long a stored-data point waits for intake's first gauge refresh after a start.
REFRESH_WAIT_S = 1200.0


@dataclass
class Config:
    scale: str = "10k"
    soak_s: int = 0
    rates: list[float] = field(default_factory=lambda: [20.0, 40.0])
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


class Ui:
    """What the run tells the person watching it; the CLI gives a rich implementation."""

    def note(self, text: str) -> None:
        print(text, flush=True)

    @contextlib.contextmanager
    def phase(self, title: str, total: int | None = None) -> Iterator[Callable[[StepStatus], None]]:
        self.note(title)
        yield lambda _status: None


@dataclass
class RunState:
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

    @property
    def db(self) -> Any:
        return self.mongo[self.config.mongo_db]

    @property
    def js(self) -> Any:
        return self.nc.jetstream()

    def _watch(self) -> None:
        self.sampler.watch("bench", os.getpid())
        for name, pid in self.bench.pids().items():
            self.sampler.watch(name, pid)

    async def _guarded(self, phase: str, work: Awaitable[None]) -> None:
        """An optional phase that fails is recorded; the figures measured so far are kept."""
        try:
            await work
        except Exception as exc:
            self.result.setdefault("errors", {})[phase] = f"{type(exc).__name__}: {exc}"[:500]
            self.ui.note(f"  {phase} failed: {type(exc).__name__}: {str(exc)[:200]}")
