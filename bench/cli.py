"""`python -m bench`: run the benchmark and write bench/results/latest.{json,md}.

Environment (what `make bench` passes): SCALE=10k|100k|1m, SOAK=<seconds>,
NATS_URL / MONGO_URL for servers of your own, LAPOR_BENCH_CPROFILE=<service>
to run one service under cProfile, LAPOR_BENCH_PYSPY=<path to py-spy> to
sample every service under the maximum load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench import results
from bench.load import StepStatus
from bench.run import SCALES, Config, Run, Ui
from bench.stack import BenchStack

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()
SERVICES = ("intake", "router", "sla", "notify")


class RichUi(Ui):
    def note(self, text: str) -> None:
        console.print(text, highlight=False)

    @contextlib.contextmanager
    def phase(self, title: str, total: int | None = None) -> Iterator[Callable[[StepStatus], None]]:
        columns = (
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(title, total=total, info="")

            def update(status: StepStatus) -> None:
                elapsed = max(status.elapsed(), 1e-6)
                progress.update(
                    task,
                    completed=status.completed,
                    info=(
                        f"sent {status.sent:,} · done {status.completed:,} · "
                        f"in flight {status.sent - status.completed:,} · "
                        f"{status.completed / elapsed:,.0f}/s"
                    ),
                )

            yield update
        console.print(f"[green]✓[/] {title}", highlight=False)


def _rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


@app.command()
def main(
    scale: Annotated[
        str, typer.Option(envvar="SCALE", help="largest stored size: 10k, 100k or 1m")
    ] = "10k",
    soak: Annotated[int, typer.Option(envvar="SOAK", help="seconds of RSS soak (0: none)")] = 0,
    rates: Annotated[str, typer.Option(help="fixed rates, complaints/s")] = "20,40",
    step_seconds: Annotated[float, typer.Option(help="seconds per fixed rate")] = 30.0,
    max_seconds: Annotated[float, typer.Option(help="measured seconds at the maximum rate")] = 30.0,
    window: Annotated[int, typer.Option(help="SMS in flight at the maximum rate")] = 32,
    raw_seconds: Annotated[float, typer.Option(help="seconds per raw measurement")] = 5.0,
    scale_seconds: Annotated[
        float, typer.Option(help="measured seconds per stored-data size")
    ] = 20.0,
    replicas: Annotated[bool, typer.Option(help="measure 2 intake + 2 router processes")] = True,
    census: Annotated[
        bool, typer.Option(help="count DB commands per service (bench/census)")
    ] = True,
    out: Annotated[Path, typer.Option(help="where latest.json and latest.md go")] = Path(
        "bench/results"
    ),
    keep_data: Annotated[bool, typer.Option(help="keep var/bench/<run>/ databases")] = False,
    cprofile: Annotated[
        str | None,
        typer.Option(envvar="LAPOR_BENCH_CPROFILE", help="service to run under cProfile"),
    ] = None,
    py_spy: Annotated[
        str | None,
        typer.Option(envvar="LAPOR_BENCH_PYSPY", help="py-spy binary: profile every service"),
    ] = None,
    console_page: Annotated[
        bool,
        typer.Option(
            "--console",
            envvar="LAPOR_BENCH_CONSOLE",
            help="then the console's worklist page with 100,000 stored complaints (bench.console)",
        ),
    ] = False,
) -> None:
    scale = scale.lower()
    if scale not in SCALES:
        raise typer.BadParameter(f"SCALE must be one of {', '.join(SCALES)}")
    if cprofile and cprofile not in SERVICES:
        raise typer.BadParameter(f"LAPOR_BENCH_CPROFILE must name one of {', '.join(SERVICES)}")
    config = Config(
        scale=scale,
        soak_s=soak,
        rates=_rates(rates),
        step_s=step_seconds,
        max_s=max_seconds,
        window=window,
        raw_s=raw_seconds,
        scale_s=scale_seconds,
        replicas=replicas,
        census=census,
        out_dir=out,
        cprofile=cprofile,
        py_spy=py_spy,
        keep_data=keep_data,
        command=_command_line(scale, soak),
        mongo_db=os.environ.get("MONGO_DB", "lapor_bench"),
    )
    bench = BenchStack.create(config.mongo_db, cprofile=cprofile, census=census)
    document = asyncio.run(Run(config, RichUi(), bench).execute())
    json_path, md_path = results.write(document, out)
    console.print(md_path.read_text(), highlight=False)
    console.print(f"written: {json_path}, {md_path}; logs in {bench.workdir / 'logs'}")
    if console_page:
        from bench import console as console_bench

        page = asyncio.run(console_bench.run(100_000, 300))
        console_bench.write(page, out)
        console.print(console_bench.markdown(page), highlight=False)


def _command_line(scale: str, soak: int) -> str:
    if os.environ.get("MAKELEVEL"):
        extra = (" SCALE=" + scale if scale != "10k" else "") + (f" SOAK={soak}" if soak else "")
        return f"make bench{extra}"
    return " ".join(
        shlex.quote(a) for a in [Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]
    )
