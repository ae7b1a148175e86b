"""The result document of a run: its required keys, a schema check, the Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA = "lapor-bench/1"

# Headline figures every result carries; a None needs a reason in `null_reasons`.
HEADLINE = (
    "e2e_complaints_per_s",
    "e2e_p99_ms",
    "db_ops_ratio",
    "scale_ratio_1m_vs_10k",
)
OPTIONAL_FIGURES = (
    "db_commands_per_complaint",
    "e2e_sustained_per_s",
    "scale_ratio_100k_vs_10k",
    "msg_publish_ratio",
    "msg_consume_ratio",
    "replica_ratio_2_vs_1",
    "sync_always_publish_ratio",
    "soak_rss_slope_mb_per_min_max",
    "gauges_age_s_at_1m",
)

# The targets for this machine (2 cores).
TARGETS: dict[str, dict[str, Any]] = {
    "e2e_complaints_per_s": {"op": ">=", "value": 40, "text": ">= 40 complaints/s end to end"},
    "e2e_p99_ms": {"op": "<=", "value": 1000, "text": "p99 <= 1 s at half the maximum"},
    "db_ops_ratio": {"op": ">=", "value": 0.6, "text": "pipeline DB ops/s >= 60% of raw"},
    "scale_ratio_1m_vs_10k": {"op": ">=", "value": 0.8, "text": "1M throughput >= 80% of 10k"},
    "db_commands_per_complaint": {"op": "<=", "value": 12, "text": "<= 12 DB commands each"},
    "gauges_age_s_at_1m": {"op": "<=", "value": 60, "text": "gauges <= 60 s old at 1M stored"},
}


def target_met(key: str, value: float | None) -> bool | None:
    target = TARGETS.get(key)
    if target is None or value is None:
        return None
    return value >= target["value"] if target["op"] == ">=" else value <= target["value"]


def validate(result: dict[str, Any]) -> list[str]:
    """Problems with a result document; empty when it is complete."""
    problems: list[str] = []
    if result.get("schema") != SCHEMA:
        problems.append(f"schema must be {SCHEMA!r}")
    reasons = result.get("null_reasons") or {}
    for key in HEADLINE:
        if key not in result:
            problems.append(f"missing {key}")
            continue
        value = result[key]
        if value is None:
            if not reasons.get(key):
                problems.append(f"{key} is null without a reason in null_reasons")
        elif not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{key} must be a number or null")
    for key in ("machine", "versions"):
        if not isinstance(result.get(key), dict):
            problems.append(f"missing {key}")
    versions = result.get("versions") or {}
    for key in ("nats_server", "ferretdb", "python", "cpu_count"):
        if key not in versions:
            problems.append(f"versions.{key} missing")
    return problems


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    problems = validate(result)
    if problems:
        raise ValueError("incomplete result: " + "; ".join(problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "latest.json"
    md_path = out_dir / "latest.md"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    md_path.write_text(render_markdown(result))
    return json_path, md_path


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{unit}"


def _met(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[value]


def render_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark {result.get('started_at', '')}",
        "",
        f"Command: `{result.get('command', '')}`  ",
        _versions_line(result),
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    reasons = result.get("null_reasons") or {}
    for key in (*HEADLINE, *OPTIONAL_FIGURES):
        if key not in result:
            continue
        target = TARGETS.get(key, {}).get("text", "")
        value = _fmt(result[key])
        if result[key] is None and key in reasons:
            value = f"— ({reasons[key]})"
        lines.append(f"| `{key}` | {value} | {target} | {_met(target_met(key, result[key]))} |")
    lines += _steps_table(result)
    lines += _resources_table(result)
    lines += _raw_table(result)
    lines += _scale_table(result)
    return "\n".join(lines) + "\n"


def _versions_line(result: dict[str, Any]) -> str:
    v = result.get("versions") or {}
    m = result.get("machine") or {}
    return (
        f"Machine: {m.get('cpu_model', '?')}, {v.get('cpu_count', '?')} CPUs, "
        f"{m.get('memory_gb', '?')} GB; nats-server {v.get('nats_server', '?')}, "
        f"FerretDB {v.get('ferretdb', '?')}, Python {v.get('python', '?')}"
    )


def _steps_table(result: dict[str, Any]) -> list[str]:
    steps = (result.get("e2e") or {}).get("steps") or []
    if not steps:
        return []
    lines = [
        "",
        "## End to end (SMS in → acknowledgement out)",
        "",
        "p50/p95/p99 count unanswered SMS as infinitely late (— when a percentile falls "
        "among them). Stored: complaints in the database when the step began. Others: CPU "
        "(% of one core) used by processes outside the benchmark (other work on the machine).",
        "",
        "| step | offered/s | sent | acked | unanswered | throughput/s "
        "| p50 ms | p95 ms | p99 ms | max ms | stored | others CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        name = s["step"] + (" (stopped: backlog)" if s.get("stopped_early") else "")
        lines.append(
            f"| {name} | {_fmt(s.get('offered_per_s'))} | {_fmt(s.get('sent'))} | "
            f"{_fmt(s.get('completed'))} | {_fmt(s.get('missing'))} | "
            f"{_fmt(s.get('throughput_per_s'))} | {_fmt(s.get('p50_ms'))} | "
            f"{_fmt(s.get('p95_ms'))} | {_fmt(s.get('p99_ms'))} | {_fmt(s.get('max_ms'))} | "
            f"{_fmt(s.get('stored_before'))} | {_fmt(s.get('others_cpu_pct'))} |"
        )
    return lines


def _resources_table(result: dict[str, Any]) -> list[str]:
    resources = result.get("resources") or {}
    phase = resources.get("max") or {}
    if not phase:
        return []
    lines = [
        "",
        "## Processes at the maximum rate (CPU % of one core, psutil)",
        "",
        "| process | CPU mean % | CPU max % | RSS max MB |",
        "|---|---|---|---|",
    ]
    for name, v in sorted(phase.items(), key=lambda kv: -kv[1]["cpu_mean_pct"]):
        peak = _fmt(v["cpu_max_pct"]) if name != "others" else "—"
        rss = _fmt(v["rss_max_mb"]) if name != "others" else "—"
        lines.append(f"| {name} | {_fmt(v['cpu_mean_pct'])} | {peak} | {rss} |")
    return lines


def _raw_table(result: dict[str, Any]) -> list[str]:
    db = result.get("db_ops") or {}
    msgs = result.get("messages") or {}
    if not db and not msgs:
        return []
    lines = [
        "",
        "## Pipeline against the raw limits of the same servers",
        "",
        "| quantity | pipeline | raw | ratio |",
        "|---|---|---|---|",
        f"| DB ops/s (mix of the pipeline's commands) | {_fmt(db.get('pipeline_ops_per_s'))} | "
        f"{_fmt(db.get('raw_mix_ops_per_s'))} | {_fmt(result.get('db_ops_ratio'))} |",
        f"| JetStream publishes/s | {_fmt(msgs.get('pipeline_published_per_s'))} | "
        f"{_fmt(msgs.get('raw_publish_per_s'))} | {_fmt(result.get('msg_publish_ratio'))} |",
        f"| JetStream deliveries+acks/s | {_fmt(msgs.get('pipeline_delivered_per_s'))} | "
        f"{_fmt(msgs.get('raw_consume_per_s'))} | {_fmt(result.get('msg_consume_ratio'))} |",
    ]
    synced = (result.get("raw") or {}).get("nats_sync_always")
    if synced:
        default = result["raw"]["nats"]
        lines.append(
            f"| JetStream publishes/s with `sync_interval: always` | — | "
            f"{_fmt(synced['publish']['per_s'])} (default {_fmt(default['publish']['per_s'])}) | "
            f"{_fmt(result.get('sync_always_publish_ratio'))} |"
        )
    per = db.get("per_complaint") or {}
    if per:
        mix = ", ".join(f"{k} {_fmt(v)}" for k, v in per.items() if v)
        carried = db.get("statements_per_complaint")
        statements = f", carrying {_fmt(carried)} statements" if carried else ""
        lines += [
            "",
            f"DB commands per complaint: {_fmt(db.get('total_per_complaint'))} ({mix})"
            f"{statements}.",
        ]
    routing = result.get("routing")
    if routing:
        lines += [
            "",
            f"Routing one complaint (`Router.decide`, {routing['decisions']:,} texts, in process): "
            f"median {_fmt(routing['median_us'])} µs, p99 {_fmt(routing['p99_us'])} µs; "
            f"directory and lexicon loaded once in {_fmt(routing['load_ms'])} ms.",
        ]
    return lines


def _scale_table(result: dict[str, Any]) -> list[str]:
    scale = result.get("scale") or {}
    rows = [(k, v) for k, v in scale.items() if isinstance(v, dict) and "stored" in v]
    if not rows:
        return []
    lines = [
        "",
        "## Stored data",
        "",
        "| stored complaints | throughput/s | acked | p99 ms "
        "| just started: throughput/s | first gauge refresh (s) "
        "| sweep, few due (ms) | sweep, all open (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _label, v in rows:
        sweep = v.get("sweep") or {}
        few = (sweep.get("few_due") or {}).get("median_ms")
        every = (sweep.get("all_open") or {}).get("median_ms")
        cold = v.get("just_started") or {}
        lines.append(
            f"| {_fmt(v.get('stored'))} | {_fmt(v.get('throughput_per_s'))} | "
            f"{_fmt(v.get('acknowledged'))} | {_fmt(v.get('p99_ms'))} | "
            f"{_fmt(cold.get('throughput_per_s'))} | {_fmt(v.get('first_refresh_s'))} | "
            f"{_fmt(few)} | {_fmt(every)} |"
        )
    return lines
