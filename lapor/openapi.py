"""Generate (or check) the committed OpenAPI document of intake's HTTP API.

python -m lapor.openapi write   # regenerate docs/openapi/intake.json
python -m lapor.openapi check   # exit 1 if the committed file differs from the code
"""

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "openapi" / "intake.json"


def render() -> str:
    from services.intake.wiring import openapi_document

    document: dict[str, Any] = openapi_document()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if (argv[1] if len(argv) > 1 else "write") == "write":
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text, encoding="utf-8")
        return 0
    if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
        print("OpenAPI out of date (run `make docs`): docs/openapi/intake.json", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
