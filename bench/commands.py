"""`python -m bench.commands`: database commands per complaint, per service, at one
fixed rate, on a fresh stack of the real servers (a few minutes).

The same count as the full bench's `db_ops.per_complaint_by_service` (bench/census:
a command listener in each service process), without its raw, scale and replica
phases: for checking what a change costs in commands. Counts, not speeds, so a
busy machine does not change them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import nats
import typer

from bench import counters
from bench.load import LoadDriver
from bench.stack import BenchStack

app = typer.Typer(add_completion=False, help=__doc__)


Census = dict[str, dict[str, int]]


async def count(rate: float, seconds: float) -> tuple[int, int, Census, Census]:
    """Complaints acknowledged, missing, and commands and their statements per service
    and kind in the step."""
    bench = BenchStack.create(mongo_db="lapor_commands")
    bench.start()
    try:
        nc = await nats.connect(bench.stack.nats, name="lapor-bench-commands")
        driver = LoadDriver(nc, run_id=int(time.time()) % 80 + 1)
        await driver.attach()
        # First complaints warm every path (indexes, connections) outside the count.
        await driver.open_loop("warm-up", 5, 4, max_backlog=1000, drain_timeout_s=60)
        before = await _settled(bench)
        statements_before = counters.census(bench.census_dir, "statements")
        step = await driver.open_loop(
            "counted", rate, seconds, max_backlog=10_000, drain_timeout_s=120
        )
        after = await _settled(bench)
        statements = counters.census_delta(
            statements_before, counters.census(bench.census_dir, "statements")
        )
        await nc.close()
        return step.completed, step.missing, counters.census_delta(before, after), statements
    finally:
        bench.stop()


async def _settled(bench: BenchStack) -> Census:
    """The census once the pipeline's deferred writes and the census files (rewritten
    every second) have caught up: two equal readings 1.5 s apart, or the last one
    after 30 s (periodic sweeps keep adding a little)."""
    last = counters.census(bench.census_dir)
    for _ in range(20):
        await asyncio.sleep(1.5)
        now = counters.census(bench.census_dir)
        if now == last:
            break
        last = now
    return last


@app.command()
def main(
    rate: Annotated[float, typer.Option(help="complaints per second")] = 8.0,
    seconds: Annotated[float, typer.Option(help="seconds at that rate")] = 20.0,
) -> None:
    completed, missing, delta, statements = asyncio.run(count(rate, seconds))
    if not completed:
        typer.echo("no complaint was acknowledged", err=True)
        raise typer.Exit(1)
    total = total_statements = 0.0
    for service, kinds in sorted(delta.items()):
        per = sum(kinds.values()) / completed
        in_them = sum(statements.get(service, {}).values()) / completed
        total, total_statements = total + per, total_statements + in_them
        typer.echo(f"{service}: {per:.2f} ({in_them:.2f} statements)")
        for kind, n in kinds.items():
            carried = statements.get(service, {}).get(kind, n) / completed
            typer.echo(f"    {kind}: {n / completed:.2f} ({carried:.2f})")
    typer.echo(
        f"{completed} complaints ({missing} missing): {total:.2f} commands per complaint, "
        f"{total_statements:.2f} statements in them"
    )


if __name__ == "__main__":
    app()
