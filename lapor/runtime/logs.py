"""Structured logging: one JSON object per line, carrying complaint and event ids.

The ids of the message being handled (bound by the broker middleware, see
`lapor.runtime.broker`) go on every line written while it is handled, so one
complaint can be followed through all services by its tracking id.

Phone numbers must never reach a log line; a last-resort filter masks anything
that looks like one, in case a message or an exception text carries it.
"""

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# +62 / 62 / 0, a mobile prefix 8xx and 6–10 more digits, optionally split by
# spaces or dashes. Deliberately greedy about its surroundings (only a digit or
# a decimal point before it spares a number): a false mask costs a log reader
# a few digits, a miss leaks a citizen's number.
_PHONE = re.compile(r"(?<![\d.])(?:\+62|62|0)[ -]?8\d{2}(?:[ -]?\d){6,10}(?!\d)")

# Ids a line may carry, from the bound context or the record's `extra`.
ID_KEYS = ("complaint_id", "event_id", "command_id", "notification_id")
# Further fields a record's `extra` may set (the per-message line of the broker).
_FIELDS = ("subject", "consumer", "delivery", "outcome", "duration_ms", "error")

_bound: ContextVar[Mapping[str, str]] = ContextVar("lapor_log_ids", default=MappingProxyType({}))


def bound_ids() -> Mapping[str, str]:
    return _bound.get()


def bind_ids(**ids: str | None) -> Token[Mapping[str, str]]:
    """Add ids to the lines of the current task; `unbind_ids(token)` restores."""
    merged = {**_bound.get(), **{k: v for k, v in ids.items() if v}}
    return _bound.set(MappingProxyType(merged))


def unbind_ids(token: Token[Mapping[str, str]]) -> None:
    _bound.reset(token)


@contextmanager
def log_ids(**ids: str | None) -> Iterator[None]:
    token = bind_ids(**ids)
    try:
        yield
    finally:
        unbind_ids(token)


def mask_phones(text: str) -> str:
    return _PHONE.sub(lambda m: m.group(0)[:4] + "****", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ids = bound_ids()
        for key in ID_KEYS:
            if (value := getattr(record, key, None) or ids.get(key)) is not None:
                entry[key] = value
        for key in _FIELDS:
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # The whole line, so context fields and exception texts are covered too.
        return mask_phones(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s " + service + " %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        ids = bound_ids()
        # After the message, before a traceback.
        return super().formatMessage(record) + "".join(
            f" {key}={value}"
            for key in ID_KEYS
            if (value := getattr(record, key, None) or ids.get(key)) is not None
        )

    def format(self, record: logging.LogRecord) -> str:
        return mask_phones(super().format(record))


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs each request's URL at INFO, and some URLs carry a secret in their
    # query (Kannel's status page and sendsms take the password there).
    for noisy in ("uvicorn.access", "pymongo", "nats", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # FastStream logs every message with its subject and headers at INFO.
    logging.getLogger("faststream").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("faststream.access").setLevel(max(logging.WARNING, root.level))
