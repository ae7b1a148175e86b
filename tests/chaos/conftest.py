from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log scan reads what every other test's processes wrote: it goes last."""
    scans = [item for item in items if item.path.name == "test_log_scan.py"]
    items[:] = [item for item in items if item.path.name != "test_log_scan.py"] + scans
