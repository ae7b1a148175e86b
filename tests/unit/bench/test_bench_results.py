"""The result document: required keys, reasons for missing figures, the Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.results import HEADLINE, SCHEMA, render_markdown, target_met, validate, write


def _document(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": "2026-11-28T12:00:00+00:00",
        "command": "make bench",
        "e2e_complaints_per_s": 12.5,
        "e2e_p99_ms": 840.0,
        "db_ops_ratio": 0.71,
        "scale_ratio_1m_vs_10k": None,
        "null_reasons": {"scale_ratio_1m_vs_10k": "1M point not requested"},
        "versions": {
            "nats_server": "2.15.1",
            "ferretdb": "v1.24.2",
            "python": "3.11.7",
            "cpu_count": 2,
        },
        "machine": {"cpu_model": "test", "memory_gb": 1.0},
        "e2e": {
            "steps": [
                {
                    "step": "300/s",
                    "offered_per_s": 300.0,
                    "sent": 9000,
                    "completed": 9000,
                    "missing": 0,
                    "throughput_per_s": 299.0,
                    "p50_ms": 100.0,
                    "p95_ms": 500.0,
                    "p99_ms": 840.0,
                    "max_ms": 990.0,
                    "stored_before": 1234,
                }
            ]
        },
    }
    doc.update(overrides)
    return doc


def test_a_complete_document_is_valid() -> None:
    assert validate(_document()) == []


@pytest.mark.parametrize("key", HEADLINE)
def test_every_headline_figure_is_required(key: str) -> None:
    doc = _document()
    del doc[key]
    assert f"missing {key}" in validate(doc)


def test_a_null_figure_needs_a_reason() -> None:
    doc = _document(db_ops_ratio=None)
    assert validate(doc) == ["db_ops_ratio is null without a reason in null_reasons"]
    doc["null_reasons"]["db_ops_ratio"] = "no database operations were counted"
    assert validate(doc) == []


def test_figures_are_numbers_and_versions_are_recorded() -> None:
    assert validate(_document(e2e_p99_ms="fast")) == ["e2e_p99_ms must be a number or null"]
    assert validate(_document(e2e_p99_ms=True)) == ["e2e_p99_ms must be a number or null"]
    doc = _document()
    del doc["versions"]["ferretdb"]
    assert validate(doc) == ["versions.ferretdb missing"]


def test_targets_of_the_issue() -> None:
    assert target_met("e2e_complaints_per_s", 39.9) is False
    assert target_met("e2e_complaints_per_s", 40.0) is True
    assert target_met("db_commands_per_complaint", 11.8) is True
    assert target_met("e2e_p99_ms", 840.0) is True
    assert target_met("e2e_p99_ms", 1200.0) is False
    assert target_met("db_ops_ratio", 0.59) is False
    assert target_met("scale_ratio_1m_vs_10k", None) is None


def test_write_refuses_an_incomplete_document_and_writes_both_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write(_document(schema="other"), tmp_path)
    json_path, md_path = write(_document(), tmp_path)
    assert json.loads(json_path.read_text())["e2e_complaints_per_s"] == 12.5
    markdown = md_path.read_text()
    assert "| `e2e_p99_ms` | 840.0 | p99 <= 1 s at half the maximum | yes |" in markdown
    assert "1M point not requested" in markdown
    assert "| 300/s | 300.0 | 9,000 | 9,000 | 0 | 299.0 |" in render_markdown(_document())
