"""Outgoing message templates of the notify service, and Indonesian labels and dates.

Templates live in a YAML file that operators may edit. Every mistake in that
file (a misspelt placeholder, a missing template, a citizen SMS that could
exceed its segment budget) must stop the service at start-up with a clear
message, never surface later as a broken SMS to a citizen. Hence the strict
validation in `TemplateSet.load` against `CONTRACT`, the set of templates and
variables this service's code supplies.

Placeholders use `string.Template` syntax: `${tracking_id}` (or
`$tracking_id`), `$$` for a literal dollar sign.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from string import Template
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError

from services.notify.sms import (
    Part,
    SmsBudgetError,
    cut_words,
    fit_parts,
    fits,
    is_gsm7,
    non_gsm7_chars,
    to_gsm7,
    transliterate,
)
from services.notify.template_contract import CONTRACT, Audience, TemplateSpec

DEFAULT_TEMPLATE_PATH = Path(__file__).with_name("templates") / "id.yaml"


class TemplateError(Exception):
    """The template file is unusable, or a template cannot be rendered as asked."""


class RenderError(TemplateError):
    """A render call does not match the template (missing or unknown values, bad types)."""


# --- file schema -------------------------------------------------------------


class _Strict(BaseModel):
    # A misspelt key ("shortn: true") must fail, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _VariableDef(_Strict):
    description: str = ""
    optional: bool = False
    default: str = ""
    max_length: PositiveInt | None = None
    shorten: bool = False


class _TemplateDef(_Strict):
    description: str = ""
    max_segments: PositiveInt | None = None
    variables: dict[str, _VariableDef | None] = {}
    subject: str | None = None
    text: str


class _Defaults(_Strict):
    citizen_max_segments: PositiveInt = 2


class _FileDef(_Strict):
    version: Literal[1] = 1
    defaults: _Defaults = _Defaults()
    variables: dict[str, _VariableDef] = {}
    templates: dict[str, _TemplateDef]


# --- loaded templates ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    optional: bool = False
    default: str = ""
    max_length: int | None = None
    shorten: bool = False
    description: str = ""

    @property
    def free_text(self) -> bool:
        """Unbounded text that absorbs the cuts before any bounded value is touched."""
        return self.shorten and self.max_length is None


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    name: str
    audience: Audience
    text: str
    variables: Mapping[str, Variable]
    max_segments: int | None = None
    subject: str | None = None
    description: str = ""


_FORMAT_STYLE = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SPACES = re.compile(r"[ \t]{2,}")


def _pieces(text: str) -> Iterator[tuple[str, bool]]:
    """Split a template into (literal, False) and (variable name, True) pieces."""
    pos = 0
    for match in Template.pattern.finditer(text):
        if match.start() > pos:
            yield text[pos : match.start()], False
        if match.group("escaped") is not None or match.group("invalid") is not None:
            yield "$", False  # an invalid "$" is reported by _syntax_problems
        else:
            yield match.group("named") or match.group("braced"), True
        pos = match.end()
    if pos < len(text):
        yield text[pos:], False


def _placeholders(text: str) -> set[str]:
    return {piece for piece, is_var in _pieces(text) if is_var}


def _literal(text: str) -> str:
    return "".join(piece for piece, is_var in _pieces(text) if not is_var)


def _syntax_problems(where: str, text: str) -> list[str]:
    problems = []
    for match in Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            snippet = text[match.start() : match.start() + 12]
            problems.append(f"{where}: invalid placeholder near {snippet!r}; write ${{name}}")
    for match in _FORMAT_STYLE.finditer(text):
        found = match.group(0)
        problems.append(f"{where}: {found} is not a placeholder here; write ${found}")
    return problems


# --- validation at load ----------------------------------------------------------


def _merge_variable(name: str, shared: _VariableDef | None, own: _VariableDef | None) -> Variable:
    merged = shared or _VariableDef()
    if own is not None:
        merged = merged.model_copy(update=own.model_dump(exclude_unset=True))
    return Variable(name=name, **merged.model_dump())


def _contract_problems(
    name: str, spec: TemplateSpec, variables: Mapping[str, Variable]
) -> list[str]:
    problems = [
        f"{name}: must declare variable {var!r} (the notify service supplies it)"
        for var in sorted(spec.variables - variables.keys())
    ]
    problems += [
        f"{name}: declares {var!r}, which the notify service does not supply"
        for var in sorted(variables.keys() - spec.variables)
    ]
    problems += [
        f"{name}: variable {var!r} must be marked optional: the service may leave it out"
        for var in sorted(spec.optional)
        if var in variables and not variables[var].optional
    ]
    return problems


def _usage_problems(name: str, tpl: MessageTemplate) -> list[str]:
    used = _placeholders(tpl.text) | _placeholders(tpl.subject or "")
    problems = [
        f"{name}: placeholder ${{{var}}} is not a declared variable"
        for var in sorted(used - tpl.variables.keys())
    ]
    problems += [
        f"{name}: variable {var!r} is declared but never used; use it or mark it optional"
        for var, v in sorted(tpl.variables.items())
        if var not in used and not v.optional
    ]
    return problems


def _official_problems(name: str, tpl: MessageTemplate, segments_set: bool) -> list[str]:
    problems = []
    if segments_set:
        problems.append(f"{name}: max_segments applies to citizen SMS only")
    if not tpl.subject or not tpl.subject.strip():
        problems.append(f"{name}: official messages need a subject")
    elif "\n" in tpl.subject.strip():
        problems.append(f"{name}: subject must be a single line")
    return problems


def _citizen_problems(name: str, tpl: MessageTemplate) -> list[str]:
    problems = []
    if tpl.subject is not None:
        problems.append(f"{name}: citizen SMS have no subject")
    bad = non_gsm7_chars(_literal(tpl.text))
    if bad:
        problems.append(
            f"{name}: characters outside the GSM-7 alphabet {bad!r} would make every "
            "such SMS cost UCS-2 segments"
        )
    problems += [
        f"{name}: variable {var!r} needs max_length or shorten: true, "
        "otherwise the SMS budget cannot be guaranteed"
        for var, v in sorted(tpl.variables.items())
        if v.max_length is None and not v.shorten
    ]
    if not problems:
        problems += _budget_problems(name, tpl)
    return problems


def _filler(length: int) -> str:
    # Word-shaped, so the word-boundary cut behaves as with real text.
    text = ("xxxxxxxxx " * (length // 10 + 1))[:length]
    return text[:-1] + "x" if text.endswith(" ") else text


def _parts(tpl: MessageTemplate, variable: Callable[[str, Variable], Part]) -> list[Part]:
    """The template's text as parts: literal text as it stands, each variable as
    `variable` makes it from its name and declaration."""
    return [
        variable(piece, tpl.variables[piece]) if is_var else Part(piece)
        for piece, is_var in _pieces(tpl.text)
    ]


def _worst_case_parts(tpl: MessageTemplate) -> list[Part]:
    # Bounded values at their longest are protected: the check proves they
    # never need cutting; only free text may give way.
    return _parts(
        tpl, lambda _name, var: Part(_filler(var.max_length or 500), cuttable=var.free_text)
    )


def _budget_problems(name: str, tpl: MessageTemplate) -> list[str]:
    assert tpl.max_segments is not None
    try:
        fit_parts(_worst_case_parts(tpl), tpl.max_segments)
    except SmsBudgetError as exc:
        return [
            f"{name}: with the longest allowed values the SMS does not fit "
            f"{tpl.max_segments} segment(s): {exc}; shorten the text or lower max_length"
        ]
    return []


def _build(
    name: str, raw: _TemplateDef, shared: Mapping[str, _VariableDef], citizen_segments: int
) -> tuple[MessageTemplate, list[str]]:
    spec = CONTRACT[name]
    variables = {
        var: _merge_variable(var, shared.get(var), own) for var, own in raw.variables.items()
    }
    segments = raw.max_segments or citizen_segments
    tpl = MessageTemplate(
        name=name,
        audience=spec.audience,
        text=raw.text.strip(),
        variables=MappingProxyType(variables),
        max_segments=segments if spec.audience is Audience.CITIZEN else None,
        subject=raw.subject.strip() if raw.subject is not None else None,
        description=raw.description,
    )
    problems = _syntax_problems(f"{name}.text", tpl.text)
    problems += _syntax_problems(f"{name}.subject", tpl.subject or "")
    problems += [
        f"{name}: {var!r} is not a valid variable name"
        for var in variables
        if not var.isidentifier()
    ]
    problems += _contract_problems(name, spec, variables)
    if not problems:
        problems += _usage_problems(name, tpl)
    if not problems and spec.audience is Audience.CITIZEN:
        problems += _citizen_problems(name, tpl)
    if spec.audience is Audience.OFFICIAL:
        problems += _official_problems(name, tpl, raw.max_segments is not None)
    return tpl, problems


def _name_problems(names: set[str]) -> list[str]:
    problems = [
        f"unknown template {name!r} (known: {', '.join(sorted(CONTRACT))})"
        for name in sorted(names - CONTRACT.keys())
    ]
    missing = sorted(CONTRACT.keys() - names)
    if missing:
        problems.append(f"missing required templates: {', '.join(missing)}")
    return problems


def _format_validation(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
        for err in exc.errors()
    ]


# --- rendering -------------------------------------------------------------------


def _stringify(name: str, value: object) -> str:
    if value is None:
        raise RenderError(f"value for {name!r} is None")
    # A raw datetime would print as "2026-12-12 00:00:00+08:00" in a citizen's SMS.
    if isinstance(value, date | datetime):
        raise RenderError(f"{name!r}: format dates with format_date_id / format_datetime_id")
    if isinstance(value, bool):
        raise RenderError(f"{name!r}: a boolean is not a message value")
    return str(value)


def _given_or_default(var: Variable, given: object) -> object:
    return var.default if given is None and var.optional else given


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return "".join(values[piece] if is_var else piece for piece, is_var in _pieces(text))


def _sms_parts(tpl: MessageTemplate, values: Mapping[str, str]) -> list[Part]:
    return _parts(
        tpl, lambda name, var: Part(values[name], cuttable=var.shorten, rank=int(var.free_text))
    )


def _tidy(text: str) -> str:
    # An empty optional value leaves a double space behind.
    return _SPACES.sub(" ", text).strip()


class TemplateSet:
    """A validated set of message templates; build it with `load`."""

    def __init__(self, templates: Mapping[str, MessageTemplate], source: str) -> None:
        self._templates = MappingProxyType(dict(templates))
        self.source = source

    @classmethod
    def load(
        cls, path: str | Path = DEFAULT_TEMPLATE_PATH, *, citizen_max_segments: int | None = None
    ) -> TemplateSet:
        """Read and validate a template file; any problem raises TemplateError.

        `citizen_max_segments` overrides the file's default SMS budget (templates
        with their own `max_segments` keep it).
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise TemplateError(f"{path}: cannot read template file: {exc}") from exc
        return cls.from_mapping(data, source=str(path), citizen_max_segments=citizen_max_segments)

    @classmethod
    def from_mapping(
        cls, data: Any, *, source: str = "<mapping>", citizen_max_segments: int | None = None
    ) -> TemplateSet:
        if citizen_max_segments is not None and citizen_max_segments < 1:
            raise TemplateError("citizen_max_segments must be at least 1")
        try:
            parsed = _FileDef.model_validate(data)
        except ValidationError as exc:
            raise _error(source, _format_validation(exc)) from exc
        segments = citizen_max_segments or parsed.defaults.citizen_max_segments
        problems = _name_problems(set(parsed.templates))
        templates: dict[str, MessageTemplate] = {}
        for name, raw in parsed.templates.items():
            if name in CONTRACT:
                templates[name], found = _build(name, raw, parsed.variables, segments)
                problems += found
        if problems:
            raise _error(source, problems)
        return cls(templates, source)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._templates))

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def get(self, name: str) -> MessageTemplate:
        try:
            return self._templates[name]
        except KeyError:
            raise RenderError(f"unknown template {name!r}") from None

    def render(self, name: str, **values: object) -> str:
        """Render a message body; citizen SMS are fitted to the template's segment budget.

        Raises RenderError on a missing or unknown value, or a value that
        cannot be made to fit.
        """
        tpl = self.get(name)
        prepared = self._prepare(tpl, values)
        if tpl.audience is Audience.OFFICIAL:
            return _substitute(tpl.text, prepared)
        return self._render_sms(tpl, prepared)

    def render_plain(self, name: str, **values: object) -> str:
        """Render a citizen template as a letter (e-mail): the same text, no SMS budget.

        Values keep their characters (no GSM-7 transliteration) and are not cut to
        fit segments; a bounded value still keeps its `max_length`.
        """
        tpl = self.get(name)
        if tpl.audience is not Audience.CITIZEN:
            raise RenderError(f"{name}: only citizen templates render as a letter")
        return _tidy(_substitute(tpl.text, self._prepare(tpl, values, sms=False)))

    def render_subject(self, name: str, **values: object) -> str:
        """Render the subject line of an official message."""
        tpl = self.get(name)
        if tpl.subject is None:
            raise RenderError(f"{name}: citizen SMS have no subject")
        return _tidy(_substitute(tpl.subject, self._prepare(tpl, values)))

    def _prepare(
        self, tpl: MessageTemplate, values: Mapping[str, object], *, sms: bool = True
    ) -> dict[str, str]:
        unknown = sorted(values.keys() - tpl.variables.keys())
        if unknown:
            raise RenderError(f"{tpl.name}: unknown value(s) {', '.join(unknown)}")
        missing = sorted(
            var for var, v in tpl.variables.items() if var not in values and not v.optional
        )
        if missing:
            raise RenderError(f"{tpl.name}: missing value(s) {', '.join(missing)}")
        return {
            var: self._prepare_value(tpl, v, _given_or_default(v, values.get(var)), sms=sms)
            for var, v in tpl.variables.items()
        }

    @staticmethod
    def _prepare_value(tpl: MessageTemplate, var: Variable, raw: object, *, sms: bool) -> str:
        value = _stringify(var.name, raw)
        if tpl.audience is Audience.CITIZEN:
            # One line; for an SMS, typographic quotes made GSM-7 too.
            value = " ".join((transliterate(value) if sms else value).split())
        if var.max_length is not None and len(value) > var.max_length:
            if not var.shorten:
                raise RenderError(
                    f"{tpl.name}: {var.name!r} is {len(value)} characters, "
                    f"at most {var.max_length} allowed"
                )
            value = cut_words(value, var.max_length)
        return value

    @staticmethod
    def _render_sms(tpl: MessageTemplate, values: dict[str, str]) -> str:
        assert tpl.max_segments is not None
        whole = _substitute(tpl.text, values)
        if not is_gsm7(whole) and not fits(whole, tpl.max_segments):
            # One emoji turns the SMS into UCS-2 with less than half the room;
            # losing the emoji is better than losing most of an agency's answer.
            values = {var: to_gsm7(v) for var, v in values.items()}
        try:
            return _tidy(fit_parts(_sms_parts(tpl, values), tpl.max_segments))
        except SmsBudgetError as exc:
            raise RenderError(f"{tpl.name}: values too long for the SMS budget: {exc}") from exc


def _error(source: str, problems: list[str]) -> TemplateError:
    return TemplateError(f"{source}: invalid templates:\n  - " + "\n  - ".join(problems))
