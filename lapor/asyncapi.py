"""Generate (or check) the committed AsyncAPI documents of every service from the code.

python -m lapor.asyncapi write   # regenerate docs/asyncapi/<service>.yaml
python -m lapor.asyncapi check   # exit 1 if the committed files differ from the code
"""

import importlib
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "asyncapi"
SERVICES = ("intake", "router", "sla", "notify")


def render(service: str) -> str:
    wiring = importlib.import_module(f"services.{service}.wiring")
    app = wiring.asyncapi()
    document = app.schema.to_specification().to_jsonable()
    # FastStream's channel order varies between runs; sorted keys keep diffs real.
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "write"
    stale = []
    for service in SERVICES:
        path = OUT / f"{service}.yaml"
        text = render(service)
        if mode == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path.relative_to(ROOT)))
    if stale:
        print("AsyncAPI out of date (run `make asyncapi`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
