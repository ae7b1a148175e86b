"""The figures of a run computed from its measured steps: the headline (capacity,
p99 at half of it, the highest sustained rate), database commands and bus
messages per complaint, their ratios to the raw limits, and the stored-data ratios."""

from __future__ import annotations

from bench import counters
from bench.load import StepResult
from bench.run_state import REFRESH_WAIT_S, SCALES, RunState
from bench.stats import ratio, weighted_rate

P99_LIMIT_MS = 1000.0
# Which raw measurement stands for each database command of the pipeline;
# reads of any kind (find, aggregate, count, getMore) are priced as a find.
RAW_FOR_COMMAND = {"insert": "insert", "update": "update", "findAndModify": "findAndModify"}


class Figures(RunState):
    def _headline(self, steps: list[StepResult], maximum: StepResult, half: StepResult) -> None:
        self.result["e2e_complaints_per_s"] = maximum.throughput_per_s
        if maximum.throughput_per_s is None:
            self.reasons["e2e_complaints_per_s"] = "no acknowledgement arrived"
        self.result["e2e_p99_ms"] = half.latency["p99_ms"]
        if half.latency["p99_ms"] is None:
            self.reasons["e2e_p99_ms"] = (
                f"unknown, above every measured latency: {half.missing} of {half.sent} SMS "
                f"sent at {half.step} got no acknowledgement within the step and "
                f"{self.config.drain_timeout_s:g} s of draining"
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
            "per_complaint_by_service": _per_complaint(census, n) if n else {},
            "pipeline_ops_per_s": round(total * at_max, 1) if total and at_max else None,
        }
        self.result["db_commands_per_complaint"] = total
        if total is None:
            self.reasons["db_commands_per_complaint"] = "no complaint was acknowledged"

    def _statements(self, census: dict[str, dict[str, int]], counted: StepResult) -> None:
        """The statements in those commands: a batched write is one command of many
        statements, and the database does the work of each."""
        n = counted.completed
        if not n or not census:
            return
        total = sum(sum(counts.values()) for counts in census.values()) / n
        self.result["db_ops"]["statements_per_complaint"] = round(total, 2)
        self.result["db_ops"]["statements_per_complaint_by_service"] = _per_complaint(census, n)

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


def _per_complaint(census: dict[str, dict[str, int]], n: int) -> dict[str, dict[str, float]]:
    """A census (per service and `command:collection`) divided by `n` complaints."""
    return {
        service: {k: round(v / n, 2) for k, v in counts.items()}
        for service, counts in census.items()
    }
