"""Files rendered from the code and committed: written by their generator, or
checked against what the code renders now (CI fails on a stale one)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def write_or_check(
    files: Mapping[Path, str],
    check: bool,
    stale_message: Callable[[list[Path]], str],
    announce: bool = False,
) -> int:
    """Write every file (`announce`: say so on stdout), or with `check` compare them
    with the rendering: 1, and `stale_message` of those missing or different on
    stderr, when any is."""
    if check:
        stale = [
            path
            for path, text in files.items()
            if not path.exists() or path.read_text(encoding="utf-8") != text
        ]
        if stale:
            print(stale_message(stale), file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if announce:
            print(f"wrote {path}")
    return 0


def listing(title: str, root: Path) -> Callable[[list[Path]], str]:
    """The stale message that names the files below `root`: `<title>: a, b`."""
    return lambda stale: f"{title}: " + ", ".join(str(path.relative_to(root)) for path in stale)


def checking(argv: Sequence[str]) -> bool:
    """`python -m <generator> [write|check]`: anything but `write` checks."""
    return (argv[1] if len(argv) > 1 else "write") != "write"
