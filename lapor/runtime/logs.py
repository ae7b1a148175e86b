"""Structured logging: one JSON object per line, carrying complaint and event ids.

Phone numbers must never reach a log line; a last-resort filter masks anything
that looks like one, in case a message or an exception text carries it.
"""

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# +62 / 62 / 0, a mobile prefix 8xx and 6–10 more digits, optionally split by
# spaces or dashes. Deliberately greedy about its surroundings (only a digit or
# a decimal point before it spares a number): a false mask costs a log reader
# a few digits, a miss leaks a citizen's number.
_PHONE = re.compile(r"(?<![\d.])(?:\+62|62|0)[ -]?8\d{2}(?:[ -]?\d){6,10}(?!\d)")

_CONTEXT_KEYS = ("service", "complaint_id", "event_id", "subject", "notification_id")


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
        for key in _CONTEXT_KEYS[1:]:
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # The whole line, so context fields and exception texts are covered too.
        return mask_phones(json.dumps(entry, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_phones(super().format(record))


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "pymongo", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # FastStream logs every message with its subject and headers at INFO.
    logging.getLogger("faststream").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("faststream.access").setLevel(max(logging.WARNING, root.level))
