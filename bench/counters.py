"""What the servers count: database commands (serverStatus) and JetStream messages.

FerretDB v1 has no `opcounters` in serverStatus, but it does report
`metrics.commands.<name>.total` like MongoDB does, counted per command the
server executed. The pipeline's single-document operations are one command
each, so the difference of two snapshots taken around a phase, divided by the
complaints completed in it, is the pipeline's database operations per
complaint. Nothing else may use the database during such a phase.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from lapor.contracts import subjects

# Commands that read or write documents; the rest (hello, ping, endSessions,
# createIndexes, serverStatus itself) are connection housekeeping.
DATA_COMMANDS = (
    "insert",
    "update",
    "delete",
    "find",
    "findAndModify",
    "getMore",
    "aggregate",
    "count",
    "distinct",
)
PIPELINE_STREAMS = tuple(spec.name for spec in subjects.STREAMS)


async def command_counts(client: Any) -> dict[str, int]:
    status = await client.admin.command("serverStatus")
    commands = status.get("metrics", {}).get("commands", {})
    counts: dict[str, int] = {}
    for name in DATA_COMMANDS:
        entry = commands.get(name)
        if isinstance(entry, dict) and "total" in entry:
            counts[name] = int(entry["total"])
    return counts


def count_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))}


async def jetstream_counts(js: Any) -> dict[str, int]:
    """Messages stored per pipeline stream and delivered per durable consumer."""
    counts: dict[str, int] = {}
    for stream in PIPELINE_STREAMS:
        info = await js.stream_info(stream)
        counts[f"stream:{stream}"] = int(info.state.last_seq)
        for consumer in await js.consumers_info(stream):
            counts[f"consumer:{stream}/{consumer.name}"] = int(consumer.delivered.consumer_seq)
    return counts


async def consumer_backlog(js: Any) -> dict[str, int]:
    """Messages waiting or unacknowledged per durable consumer, right now."""
    backlog: dict[str, int] = {}
    for stream in PIPELINE_STREAMS:
        for consumer in await js.consumers_info(stream):
            backlog[consumer.name] = int(consumer.num_pending + consumer.num_ack_pending)
    return backlog


def message_totals(delta: dict[str, int]) -> dict[str, int]:
    return {
        "published": sum(v for k, v in delta.items() if k.startswith("stream:")),
        "delivered": sum(v for k, v in delta.items() if k.startswith("consumer:")),
    }


def census(directory: Path, field: str = "counts") -> dict[str, dict[str, int]]:
    """Database commands per service and `command:collection`, from bench/census;
    `field="statements"`: the statements they carried."""
    out: dict[str, Counter[str]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out.setdefault(data["service"], Counter()).update(data.get(field) or {})
    return {service: dict(counts) for service, counts in out.items()}


def census_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for service, counts in after.items():
        old = before.get(service, {})
        changed = {k: v - old.get(k, 0) for k, v in counts.items() if v - old.get(k, 0)}
        if changed:
            delta[service] = dict(sorted(changed.items()))
    return delta
