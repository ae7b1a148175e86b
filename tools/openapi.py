"""Generate (or check) the committed OpenAPI document of intake's HTTP API.

python -m tools.openapi write   # regenerate docs/openapi/intake.json, hotspots.json, dlq.json
python -m tools.openapi check   # exit 1 if the committed file differs from the code
"""

import json
import sys
from pathlib import Path
from typing import Any

from lapor.runtime.generated import checking, listing, write_or_check

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "openapi" / "intake.json"
# The hotspots service's API for officers (services/hotspots/api.py).
HOTSPOTS_OUT = ROOT / "docs" / "openapi" / "hotspots.json"
# The dead-letter service's API for admins (services/deadletters/api.py).
DLQ_OUT = ROOT / "docs" / "openapi" / "dlq.json"


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> str:
    from services.intake.wiring import openapi_document

    return _json(openapi_document())


def render_hotspots() -> str:
    from services.hotspots.wiring import openapi_document

    return _json(openapi_document())


def render_dlq() -> str:
    from services.deadletters.wiring import openapi_document

    return _json(openapi_document())


def main(argv: list[str]) -> int:
    return write_or_check(
        {OUT: render(), HOTSPOTS_OUT: render_hotspots(), DLQ_OUT: render_dlq()},
        checking(argv),
        stale_message=listing("OpenAPI out of date (run `make docs`)", ROOT),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
