"""Region agency directory: who handles what, and whom to notify at each escalation level.

The directory is the shared data contract of router, notify and sla. It lives in
`data/regions/<region>/agencies.yaml`; a region may `extends: <other region>` and
override or add agencies by code, or `remove:` some. Loading validates everything
up front so a bad deployment fails at start-up with a message naming the file,
the agency and the field, instead of misrouting complaints later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lapor.contracts import AGENCY_OUT_OF_SCOPE, EscalationLevel

REGIONS_DIR = Path(__file__).resolve().parent.parent / "data" / "regions"
AGENCIES_FILE = "agencies.yaml"

# The chain in order, lowest first: the order of the contracts' levels.
ESCALATION_LEVELS: tuple[EscalationLevel, ...] = tuple(EscalationLevel)

_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
_SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 \-]{2,19}$")
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$")


class DirectoryError(ValueError):
    """The directory data is invalid; the message names file, agency and problem."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Frozen):
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    webhook: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL_RE.match(value):
            raise ValueError(f"not an e-mail address: {value!r}")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE_RE.match(value):
            raise ValueError(f"not a phone number: {value!r}")
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not _URL_RE.match(value):
            raise ValueError(f"webhook must be an http(s) URL: {value!r}")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        # A contact nobody can reach would silently swallow escalations.
        if not (self.email or self.phone or self.webhook):
            raise ValueError("contact needs at least one of email, phone, webhook")
        return self


class Contacts(_Frozen):
    liaison: tuple[Contact, ...] = ()
    head: tuple[Contact, ...] = ()
    sekda: tuple[Contact, ...] = ()
    ombudsman: tuple[Contact, ...] = ()

    def at(self, level: EscalationLevel) -> tuple[Contact, ...]:
        result: tuple[Contact, ...] = getattr(self, level)
        return result


def _terms(values: Iterable[str], field: str) -> tuple[str, ...]:
    cleaned = []
    for value in values:
        text = " ".join(str(value).split())
        if not text:
            raise ValueError(f"{field} contains an empty term")
        cleaned.append(text)
    return tuple(cleaned)


class Category(_Frozen):
    """A subject an agency handles, with the words that point to it."""

    id: str
    label: str = Field(min_length=1)
    guidance: str | None = None
    phrases: tuple[str, ...] = ()
    strong: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    weak: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG_RE.match(value):
            raise ValueError(f"category id must be lower_snake_case: {value!r}")
        return value

    @field_validator("phrases", "strong", "keywords", "weak", mode="before")
    @classmethod
    def _clean(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValueError("must be a list of terms")
        return _terms(value, "term list")

    @field_validator("phrases")
    @classmethod
    def _multiword(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        single = [p for p in value if " " not in p]
        if single:
            raise ValueError(f"phrases need two or more words (use keywords for {single})")
        return value


class Agency(_Frozen):
    code: str
    name: str = Field(min_length=1)
    handles: str = ""
    external: bool = False
    guidance: str | None = None
    aliases: tuple[str, ...] = ()
    contacts: Contacts = Contacts()
    categories: tuple[Category, ...] = Field(min_length=1)

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE_RE.match(value):
            raise ValueError(f"agency code must be UPPER_SNAKE_CASE (2-32 chars): {value!r}")
        return value

    @field_validator("aliases", mode="before")
    @classmethod
    def _clean_aliases(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        return _terms(value, "aliases")

    @model_validator(mode="after")
    def _reachable(self) -> Agency:
        if self.is_out_of_scope:
            # Out-of-scope complaints are closed with advice, so advice is mandatory.
            missing = [c.id for c in self.categories if not (c.guidance or self.guidance)]
            if missing:
                raise ValueError(f"guidance is required (missing for categories {missing})")
        elif not self.contacts.liaison:
            raise ValueError("contacts.liaison needs at least one contact")
        return self

    @property
    def is_out_of_scope(self) -> bool:
        return self.code == AGENCY_OUT_OF_SCOPE

    def category(self, category_id: str) -> Category:
        for category in self.categories:
            if category.id == category_id:
                return category
        raise KeyError(f"agency {self.code} has no category {category_id!r}")

    def guidance_for(self, category_id: str) -> str | None:
        for category in self.categories:
            if category.id == category_id and category.guidance:
                return category.guidance
        return self.guidance


class AgencyDirectory(_Frozen):
    region: str
    agencies: tuple[Agency, ...]

    @model_validator(mode="after")
    def _unique(self) -> AgencyDirectory:
        seen: dict[str, str] = {}
        for agency in self.agencies:
            for category in agency.categories:
                owner = seen.setdefault(category.id, agency.code)
                if owner != agency.code:
                    raise ValueError(
                        f"category {category.id!r} is used by both {owner} and {agency.code}"
                    )
        return self

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(a.code for a in self.agencies)

    def agency(self, code: str) -> Agency:
        for agency in self.agencies:
            if agency.code == code:
                return agency
        raise KeyError(f"unknown agency code {code!r} in region {self.region!r}")

    def name_of(self, code: str) -> str:
        return self.agency(code).name

    def __contains__(self, code: object) -> bool:
        return any(a.code == code for a in self.agencies)


# --- loading ---------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: a repeated agency code would
    otherwise silently replace the first one."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise DirectoryError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every parse problem into a DirectoryError."""
    try:
        with path.open(encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 - safe loader subclass
    except FileNotFoundError as exc:
        raise DirectoryError(f"{path}: file not found") from exc
    except DirectoryError as exc:
        raise DirectoryError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DirectoryError(f"{path}: top level must be a mapping")
    return data


def resolve_parent(region_dir: Path, parent: object, source: Path) -> Path:
    if not isinstance(parent, str) or not parent.strip() or Path(parent).name != parent:
        raise DirectoryError(f"{source}: 'extends' must name a sibling region directory")
    parent_dir = region_dir.parent / parent
    if not (parent_dir / AGENCIES_FILE).is_file():
        raise DirectoryError(
            f"{source}: extends unknown region {parent!r} (no {parent_dir / AGENCIES_FILE})"
        )
    return parent_dir


_TOP_KEYS = {"region", "extends", "remove", "defaults", "agencies"}


def _raw_agencies(region_dir: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], Any]:
    """Agency bodies keyed by code after applying `extends` and `remove`,
    plus the region defaults; each body remembers the file it came from."""
    source = region_dir / AGENCIES_FILE
    if region_dir.resolve() in chain:
        names = " -> ".join(p.name for p in (*chain, region_dir.resolve()))
        raise DirectoryError(f"{source}: circular extends ({names})")
    data = read_yaml(source)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise DirectoryError(f"{source}: unknown top-level keys {sorted(unknown)}")

    agencies: dict[str, Any] = {}
    defaults: Any = {}
    if "extends" in data:
        parent_dir = resolve_parent(region_dir, data["extends"], source)
        agencies, defaults = _raw_agencies(parent_dir, (*chain, region_dir.resolve()))

    removed = data.get("remove") or []
    if not isinstance(removed, list):
        raise DirectoryError(f"{source}: 'remove' must list agency codes")
    for code in removed:
        if code not in agencies:
            raise DirectoryError(f"{source}: cannot remove unknown agency {code!r}")
        del agencies[code]

    defaults = _merge(defaults, data.get("defaults") or {})
    body_by_code = data.get("agencies")
    if body_by_code is None:
        body_by_code = {}
    if not isinstance(body_by_code, dict):
        raise DirectoryError(f"{source}: 'agencies' must map agency codes to definitions")
    for code, body in body_by_code.items():
        if not isinstance(body, dict):
            raise DirectoryError(f"{source}: agency {code!r}: definition must be a mapping")
        merged = _merge(agencies[code][1], body) if code in agencies else body
        agencies[code] = (source, merged)
    return agencies, defaults


def _merge(base: Any, override: Any) -> Any:
    """Deep-merge mappings; anything else in the override replaces the base."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


def _categories(body: dict[str, Any]) -> list[Any]:
    categories = body.get("categories")
    if isinstance(categories, dict):
        return [
            {"id": cid, **(cbody if isinstance(cbody, dict) else {"label": cbody})}
            for cid, cbody in categories.items()
        ]
    return categories if categories is not None else []


def _build_agency(code: Any, source: Path, body: dict[str, Any], defaults: Any) -> Agency:
    fields = dict(body)
    fields["categories"] = _categories(body)
    if str(code) != AGENCY_OUT_OF_SCOPE:
        # Region-wide levels (Sekda, Ombudsman) apply unless the agency sets its own.
        default_contacts = defaults.get("contacts") if isinstance(defaults, dict) else None
        fields["contacts"] = _merge(default_contacts or {}, body.get("contacts") or {})
    try:
        return Agency(code=code, **fields)
    except ValidationError as exc:
        raise DirectoryError(f"{source}: agency {code!r}: {_describe(exc, fields)}") from exc
    except TypeError as exc:
        raise DirectoryError(f"{source}: agency {code!r}: {exc}") from exc


def _describe(exc: ValidationError, fields: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        # Name categories by id rather than list index, as they are written in YAML.
        if len(loc) >= 2 and loc[0] == "categories" and isinstance(loc[1], int):
            categories = fields.get("categories") or []
            if loc[1] < len(categories) and isinstance(categories[loc[1]], dict):
                loc[1] = categories[loc[1]].get("id", loc[1])
        where = ".".join(str(part) for part in loc) or "definition"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def load_directory(region_dir: Path) -> AgencyDirectory:
    """Load and validate `<region_dir>/agencies.yaml`, following `extends`."""
    region_dir = Path(region_dir)
    if not region_dir.is_dir():
        raise DirectoryError(f"{region_dir}: region directory not found")
    raw, defaults = _raw_agencies(region_dir, ())
    if not raw:
        raise DirectoryError(f"{region_dir / AGENCIES_FILE}: no agencies defined")
    agencies = tuple(
        _build_agency(code, source, body, defaults) for code, (source, body) in raw.items()
    )
    region = read_yaml(region_dir / AGENCIES_FILE).get("region") or region_dir.name
    try:
        return AgencyDirectory(region=str(region), agencies=agencies)
    except ValidationError as exc:
        raise DirectoryError(f"{region_dir / AGENCIES_FILE}: {_describe(exc, {})}") from exc
