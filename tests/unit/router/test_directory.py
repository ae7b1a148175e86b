"""The region agency directory: shipped data and validation of bad data."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from lapor.contracts import AGENCY_OUT_OF_SCOPE
from lapor.directory import (
    ESCALATION_LEVELS,
    REGIONS_DIR,
    AgencyDirectory,
    DirectoryError,
    load_directory,
)

BANJAR = REGIONS_DIR / "banjar"

DESIGN_CODES = set(
    "DISKOMINFO PUPR DINKES RSUD BPJSKES DISDIK DISDUKCAPIL DINSOS DLH BPBD DAMKAR DISHUB PDAM "
    "SATPOLPP DPMPTSP DISNAKER DISPERKIM DISTAN DISDAG DP3A INSPEKTORAT PLN".split()
)

MINIMAL_AGENCY = """
  {code}:
    name: {name}
    contacts:
      liaison:
        - email: pengaduan@example.go.id
    categories:
      umum:
        label: Umum
        keywords: [umum]
"""


@pytest.fixture(scope="module")
def banjar() -> AgencyDirectory:
    return load_directory(BANJAR)


def write_region(root: Path, name: str, body: str) -> Path:
    region = root / name
    region.mkdir(parents=True, exist_ok=True)
    (region / "agencies.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    return region


def minimal(code: str = "PUPR", name: str = "Dinas PU") -> str:
    return "agencies:" + MINIMAL_AGENCY.format(code=code, name=name)


# --- shipped data -------------------------------------------------------------


def test_banjar_has_every_design_agency_and_out_of_scope(banjar: AgencyDirectory) -> None:
    assert set(banjar.codes) == DESIGN_CODES | {AGENCY_OUT_OF_SCOPE}
    assert banjar.region == "banjar"


def test_lookup_by_code(banjar: AgencyDirectory) -> None:
    assert banjar.name_of("PUPR") == "Dinas Pekerjaan Umum dan Penataan Ruang"
    assert banjar.agency("PLN").external
    assert "PDAM" in banjar
    with pytest.raises(KeyError, match="NOPE"):
        banjar.agency("NOPE")


def test_every_agency_is_reachable_at_every_escalation_level(banjar: AgencyDirectory) -> None:
    for agency in banjar.agencies:
        if agency.is_out_of_scope:
            continue
        for level in ESCALATION_LEVELS:
            assert agency.contacts.at(level), f"{agency.code} has no {level} contact"
        assert agency.categories and agency.handles


def test_region_defaults_fill_sekda_and_ombudsman(banjar: AgencyDirectory) -> None:
    contacts = banjar.agency("DINSOS").contacts
    assert contacts.sekda[0].email == "sekda@banjarkab.go.id"
    assert contacts.ombudsman[0].email and "ombudsman" in contacts.ombudsman[0].email
    assert contacts.liaison[0].email == "pengaduan.dinsos@banjarkab.go.id"


def test_every_agency_has_vocabulary(banjar: AgencyDirectory) -> None:
    for agency in banjar.agencies:
        terms = [t for c in agency.categories for t in (*c.phrases, *c.strong, *c.keywords)]
        assert len(terms) >= 5, agency.code


def test_out_of_scope_guidance_points_to_police_court_and_land_office(
    banjar: AgencyDirectory,
) -> None:
    oos = banjar.agency(AGENCY_OUT_OF_SCOPE)
    assert "110" in (oos.guidance_for("pidana") or "")
    assert "Pengadilan" in (oos.guidance_for("sengketa_perdata") or "")
    assert "Pertanahan" in (oos.guidance_for("sengketa_tanah") or "")
    assert oos.guidance_for("unknown") == oos.guidance


def test_category_ids_are_unique_across_agencies(banjar: AgencyDirectory) -> None:
    ids = [c.id for a in banjar.agencies for c in a.categories]
    assert len(ids) == len(set(ids))


# --- extends ------------------------------------------------------------------


def test_region_extends_and_overrides_by_code(tmp_path: Path) -> None:
    shutil.copytree(BANJAR, tmp_path / "banjar")
    child = write_region(
        tmp_path,
        "banjarbaru",
        """
        extends: banjar
        remove: [PLN]
        agencies:
          PUPR:
            name: Dinas PUPR Kota Banjarbaru
            contacts:
              liaison:
                - email: pengaduan.pupr@banjarbarukota.go.id
          DISPORA:
            name: Dinas Pemuda dan Olahraga
            contacts:
              liaison:
                - email: dispora@banjarbarukota.go.id
            categories:
              olahraga:
                label: Sarana olahraga
                keywords: [stadion, lapangan]
        """,
    )
    directory = load_directory(child)
    assert directory.region == "banjarbaru"
    assert "PLN" not in directory
    assert "DISPORA" in directory and "DINSOS" in directory
    pupr = directory.agency("PUPR")
    assert pupr.name == "Dinas PUPR Kota Banjarbaru"
    assert pupr.contacts.liaison[0].email == "pengaduan.pupr@banjarbarukota.go.id"
    # Everything not overridden is inherited: categories and the parent's head contact.
    assert pupr.category("jalan").phrases
    assert pupr.contacts.head[0].email == "kadis.pupr@banjarkab.go.id"


def test_unknown_extends_is_reported(tmp_path: Path) -> None:
    child = write_region(tmp_path, "kota", "extends: atlantis\n" + minimal())
    with pytest.raises(DirectoryError, match=r"agencies\.yaml: extends unknown region 'atlantis'"):
        load_directory(child)


def test_circular_extends_is_reported(tmp_path: Path) -> None:
    write_region(tmp_path, "a", "extends: b\n" + minimal())
    write_region(tmp_path, "b", "extends: a\n" + minimal())
    with pytest.raises(DirectoryError, match="circular extends"):
        load_directory(tmp_path / "a")


# --- validation messages ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (minimal(code="pupr"), r"agency 'pupr': code: agency code must be UPPER_SNAKE_CASE"),
        (
            "agencies:\n  PUPR:\n    contacts: {liaison: [{email: a@b.go.id}]}\n"
            "    categories: {umum: {label: Umum}}\n",
            r"agency 'PUPR': name: Field required",
        ),
        (minimal(name="''"), r"agency 'PUPR': name: String should have at least 1 character"),
        (
            minimal().replace("pengaduan@example.go.id", "not-an-address"),
            r"agency 'PUPR': contacts\.liaison\.0\.email: not an e-mail address",
        ),
        (
            minimal().replace("keywords: [umum]", "phrases: [jalan]"),
            r"categories\.umum\.phrases: phrases need two or more words",
        ),
        (
            minimal().replace("      liaison:\n        - email: pengaduan@example.go.id\n", ""),
            r"agency 'PUPR': .*contacts\.liaison needs at least one contact",
        ),
        (
            minimal().replace("    name: Dinas PU", "    name: Dinas PU\n    colour: blue"),
            r"agency 'PUPR': colour: Extra inputs are not permitted",
        ),
        (minimal() + MINIMAL_AGENCY.format(code="PUPR", name="Lagi"), r"duplicate key 'PUPR'"),
        ("agencies: []\n", r"'agencies' must map agency codes"),
        ("regions: x\n" + minimal(), r"unknown top-level keys \['regions'\]"),
        ("agencies: {PUPR: [\n", r"invalid YAML"),
    ],
)
def test_invalid_directory_names_file_agency_and_problem(
    tmp_path: Path, body: str, expected: str
) -> None:
    region = write_region(tmp_path, "bad", body)
    with pytest.raises(DirectoryError, match=expected) as caught:
        load_directory(region)
    assert str(region / "agencies.yaml") in str(caught.value)


def test_out_of_scope_needs_guidance(tmp_path: Path) -> None:
    region = write_region(
        tmp_path,
        "bad",
        """
        agencies:
          OUT_OF_SCOPE:
            name: Di luar kewenangan
            categories:
              pidana:
                label: Pidana
                keywords: [maling]
        """,
    )
    with pytest.raises(DirectoryError, match=r"'OUT_OF_SCOPE': .*guidance is required"):
        load_directory(region)


def test_missing_region_directory(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="region directory not found"):
        load_directory(tmp_path / "nowhere")
