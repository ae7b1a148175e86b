import json
import logging

import pytest

from lapor.runtime.logs import JsonFormatter, configure_logging, mask_phones


def test_phone_numbers_are_masked_in_any_spelling() -> None:
    for number in ("+6281234567890", "6281234567890", "081234567890", "0812-3456-7890"):
        masked = mask_phones(f"sms from {number} stored")
        assert number not in masked
        assert "7890" not in masked


def test_tracking_ids_and_dates_are_left_alone() -> None:
    text = "complaint LPR-7K3M-9QX2 due 2026-12-14T16:00:00+08:00"
    assert mask_phones(text) == text


def test_json_log_line_carries_ids_and_no_phone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("+6281234567890",), None)
    record.complaint_id = "LPR-1"
    line = json.loads(JsonFormatter("notify").format(record))
    assert line["service"] == "notify"
    assert line["complaint_id"] == "LPR-1"
    assert "+6281234567890" not in line["msg"]


def test_numbers_glued_to_identifiers_and_context_fields_are_masked_too() -> None:
    for text in ("id-081234567890", "x+6281234567890y", "nomor:0 812 3456 7890"):
        assert "7890" not in mask_phones(text), text
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent", (), None)
    record.notification_id = "sms:+6281234567890"
    assert "4567890" not in JsonFormatter("notify").format(record)


def test_durations_and_sequence_numbers_are_not_masked() -> None:
    text = "took 0.0812345678 s at seq 1762812345678"
    assert mask_phones(text) == text


def test_request_urls_with_secrets_in_their_query_are_not_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The gateway polls Kannel's status page with the password in the query string;
    # httpx would log that URL at INFO.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("gateway", "INFO", "text")
        logging.getLogger("httpx").info(
            "HTTP Request: GET http://127.0.0.1:13000/status.xml?password=s3cret"
        )
        logging.getLogger("services.gateway").info("a line of our own")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    out = capsys.readouterr().out
    assert "a line of our own" in out
    assert "s3cret" not in out
