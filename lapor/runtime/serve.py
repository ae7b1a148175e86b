"""Run a service's ASGI app with uvicorn and a clean shutdown on SIGTERM/SIGINT."""

import uvicorn
from fastapi import FastAPI

from lapor.runtime.diagnostics import dump_threads_on_signal
from lapor.runtime.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    dump_threads_on_signal()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # keep our JSON logging
        access_log=False,
        # uvicorn waits for in-flight requests, then the lifespan stops the broker,
        # which lets running handlers finish and ack before the process exits.
        timeout_graceful_shutdown=25,
    )
