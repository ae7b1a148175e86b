"""The limits the pipeline is measured against: raw JetStream and single-document
database rates with the same clients, the price of `sync_interval: always`, and
the cost of one routing decision in the router's own code."""

from __future__ import annotations

import random
import time
from typing import Any

import nats

from bench import raw
from bench.stats import ratio
from bench.steps import Steps
from bench.texts import complaint_text
from tools.devstack import ROOT, Stack, free_port, quiet_sink


class Limits(Steps):
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
