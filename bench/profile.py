"""Summaries of py-spy's collapsed stacks (`--format raw`): where the samples went."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

# "function (path/to/file.py:123)"; the line number is dropped so one function is one key.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
_SITE = ("site-packages/", "lib/python3.11/", "lib/python3.12/", "lib/python3.13/")
_OWN_CODE = ("services/", "lapor/")


def frame_key(frame: str) -> tuple[str, str]:
    """(function, shortened file path) of one collapsed frame."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    path = match.group("file")
    for marker in _SITE:
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        for own in _OWN_CODE:
            if f"/{own}" in path:
                path = own + path.split(f"/{own}", 1)[1]
                break
    return match.group("func"), path


def package_of(path: str) -> str:
    """Top-level package or stdlib module of a shortened path (`pymongo`, `asyncio`)."""
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def summarize_collapsed(text: str, top: int = 15) -> dict[str, Any]:
    """Shares of samples: on-CPU functions (self), per package, and our own code on the stack."""
    own: Counter[str] = Counter()
    package: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [frame_key(f) for f in stack.split(";") if f]
        if not frames:
            continue
        count = int(count_text)
        total += count
        func, path = frames[-1]
        own[f"{func} ({path})"] += count
        package[package_of(path)] += count
        for key in {f"{f} ({p})" for f, p in frames if p.startswith(_OWN_CODE)}:
            ours[key] += count
    if total == 0:
        return {"samples": 0, "self": [], "self_by_package": [], "own_code_inclusive": []}

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[key, round(100.0 * n / total, 1)] for key, n in counter.most_common(top)]

    return {
        "samples": total,
        "self": shares(own),
        "self_by_package": shares(package),
        "own_code_inclusive": shares(ours),
    }
