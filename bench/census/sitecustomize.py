"""Counts every database command a service process sends, by command and collection,
and the statements in them (a write's documents, updates or deletes; 1 for others).

Loaded only into the services that `make bench` starts (the bench puts this
folder on their PYTHONPATH): Python imports `sitecustomize` at start-up, and
a pymongo command listener registered here applies to every client the
service creates later. The service code is not touched. A daemon thread
rewrites the counts to `$LAPOR_BENCH_CENSUS_DIR/<pid>.json` every second,
so the bench can take the difference over any phase.
"""

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path


def _install() -> None:
    target = os.environ.get("LAPOR_BENCH_CENSUS_DIR")
    if not target:
        return
    from pymongo import monitoring

    counts: Counter[str] = Counter()
    statements: Counter[str] = Counter()
    lock = threading.Lock()

    class Census(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            name = event.command_name
            collection = event.command.get(name)
            key = f"{name}:{collection}" if isinstance(collection, str) else name
            # One command may carry many statements, and the server works per statement.
            parts = [event.command.get(f) for f in ("updates", "documents", "deletes")]
            n = sum(len(p) for p in parts if isinstance(p, list)) or 1
            with lock:
                counts[key] += 1
                statements[key] += n

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(Census())
    path = Path(target) / f"{os.getpid()}.json"
    service = os.environ.get("LAPOR_BENCH_CENSUS_NAME", "?")

    def dump() -> None:
        while True:
            with lock:
                snapshot = {"counts": dict(counts), "statements": dict(statements)}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"service": service} | snapshot))
            tmp.replace(path)
            time.sleep(1.0)

    threading.Thread(target=dump, name="bench-census", daemon=True).start()


try:
    _install()
except Exception:  # noqa: S110 - a census must never stop a service from starting
    pass
