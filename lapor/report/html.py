"""The report as one self-contained HTML page: inline CSS and SVG, no script, no
external asset, so it can be mailed, archived or opened offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent

from lapor.report.build import NOT_RANKED
from lapor.report.period import DEFAULT_TIMEZONE

# The page says lang="id": decimal comma, "." between thousands, Indonesian
# month names and zone abbreviations (WIB, WITA, WIT).
LOCALE = "id_ID"

WIDTH = 900
LABEL_W = 230
VALUE_W = 180
ROW_H = 22
TOP = 34
BAR_W = WIDTH - LABEL_W - VALUE_W
ANSWER_CAP_HOURS = 14 * 24


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    text: str
    low: float | None = None
    high: float | None = None
    tick: float | None = None
    muted: bool = False


def _x(value: float, max_value: float) -> float:
    return LABEL_W + BAR_W * (value / max_value if max_value > 0 else 0)


def _bar_row(bar: Bar, y: float, max_value: float) -> str:
    parts = [
        f'<text x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end" class="label">'
        f"{escape(bar.label[:34])}</text>"
    ]
    if bar.value is not None:
        width = max(_x(bar.value, max_value) - LABEL_W, 1)
        css = "bar muted" if bar.muted else "bar"
        parts.append(
            f'<rect class="{css}" x="{LABEL_W}" y="{y + 4}" width="{width:.1f}"'
            f' height="{ROW_H - 8}"/>'
        )
    if bar.low is not None and bar.high is not None:
        x1, x2 = _x(bar.low, max_value), _x(bar.high, max_value)
        parts.append(
            f'<line class="whisker" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y + 11}" y2="{y + 11}"/>'
        )
    if bar.tick is not None:
        xt = _x(bar.tick, max_value)
        parts.append(f'<line class="tick" x1="{xt:.1f}" x2="{xt:.1f}" y1="{y + 2}" y2="{y + 20}"/>')
    parts.append(
        f'<text x="{WIDTH - VALUE_W + 8}" y="{y + 15}" class="value">{escape(bar.text)}</text>'
    )
    return "".join(parts)


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[Bar],
    *,
    max_value: float,
    reference: float | None = None,
    reference_label: str = "",
) -> str:
    """A horizontal bar chart as an inline <svg>."""
    height = TOP + ROW_H * max(len(bars), 1) + 16
    body = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" xmlns="http://www.w3.org/2000/svg"'
        f' width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="18" class="title">{escape(title)}</text>',
    ]
    if not bars:
        body.append(f'<text x="{LABEL_W}" y="{TOP + 15}" class="label">tidak ada data</text>')
    for index, bar in enumerate(bars):
        body.append(_bar_row(bar, TOP + index * ROW_H, max_value))
    if reference is not None and max_value > 0 and reference <= max_value:
        xr = _x(reference, max_value)
        body.append(
            f'<line class="reference" x1="{xr:.1f}" x2="{xr:.1f}" y1="{TOP - 4}"'
            f' y2="{height - 12}"/>'
            f'<text x="{xr + 4:.1f}" y="{height - 2}" class="note">{escape(reference_label)}</text>'
        )
    body.append("</svg>")
    return "".join(body)


def _pct(value: float | None) -> str:
    return format_percent(value, locale=LOCALE) if value is not None else "–"


def _num(value: float | None, digits: int = 1) -> str:
    pattern = "#,##0." + "0" * digits
    return format_decimal(value, format=pattern, locale=LOCALE) if value is not None else "–"


def _count(value: int) -> str:
    return format_decimal(value, locale=LOCALE)


def _days(hours: float | None) -> str:
    return f"{_num(hours / 24)} hari" if hours is not None else "–"


def _zone(report: dict[str, Any]) -> ZoneInfo:
    return ZoneInfo(report.get("timezone") or DEFAULT_TIMEZONE)


def _moment(iso: str, zone: ZoneInfo) -> str:
    """The moment as the region's people read it, e.g. 6 Desember 2026 14.05 WITA."""
    return format_datetime(
        datetime.fromisoformat(iso), "d MMMM y HH.mm z", tzinfo=zone, locale=LOCALE
    )


def _day(iso: str | None, zone: ZoneInfo, *, exclusive: bool = False) -> str | None:
    if iso is None:
        return None
    moment = datetime.fromisoformat(iso).astimezone(zone)
    # A period ends at the midnight after its last day.
    if exclusive:
        moment -= timedelta(microseconds=1)
    return format_date(moment.date(), "d MMMM y", locale=LOCALE)


def _agency_label(row: dict[str, Any]) -> str:
    """The code for an agency; the name for what stands in for one (unassigned, out of scope)."""
    return str(row["name"] if row["agency"] in NOT_RANKED else row["agency"])


def _agency_labels(report: dict[str, Any]) -> dict[str, str]:
    return {row["agency"]: _agency_label(row) for row in report["agencies"]}


def received_chart(report: dict[str, Any]) -> str:
    rows = [r for r in report["agencies"] if r["received"]]
    rows.sort(key=lambda r: (-r["received"], r["agency"]))
    bars = [Bar(_agency_label(r), r["received"], _count(r["received"])) for r in rows]
    top = max((r["received"] for r in rows), default=1)
    return bar_chart("chart-received", "Aduan diterima per perangkat daerah", bars, max_value=top)


def compliance_chart(report: dict[str, Any]) -> str:
    by_code = {r["agency"]: r for r in report["agencies"]}
    ranked = [by_code[code] for code in report["ranking"]]
    unranked = [
        r
        for r in report["agencies"]
        if r["rank"] is None and r["answered_within_deadline"]["due"] > 0
    ]
    bars = []
    for row in [*ranked, *unranked]:
        c = row["answered_within_deadline"]
        prefix = f"{row['rank']}. " if row["rank"] else ""
        bars.append(
            Bar(
                prefix + _agency_label(row),
                c["share"],
                f"{_pct(c['share'])} ({_count(c['on_time'])}/{_count(c['due'])})",
                low=c["wilson_lower"],
                high=c["wilson_upper"],
                muted=row["rank"] is None,
            )
        )
    overall = report["totals"]["answered_within_deadline"]["share"]
    return bar_chart(
        "chart-compliance",
        "Dijawab dalam batas waktu (garis: selang keyakinan 95%)",
        bars,
        max_value=1.0,
        reference=overall,
        reference_label=f"rata-rata {_pct(overall)}",
    )


def answer_time_chart(report: dict[str, Any]) -> str:
    rows = [r for r in report["agencies"] if r["time_to_answer"]["n"]]
    rows.sort(key=lambda r: (-(r["time_to_answer"]["median_hours"] or 0), r["agency"]))
    bars = [
        Bar(
            _agency_label(r),
            r["time_to_answer"]["median_hours"],
            f"{_days(r['time_to_answer']['median_hours'])}",
            tick=r["time_to_answer"]["p90_hours"],
        )
        for r in rows
    ]
    top = max([ANSWER_CAP_HOURS, *(r["time_to_answer"]["p90_hours"] or 0 for r in rows)], default=1)
    return bar_chart(
        "chart-answer-time",
        "Waktu sampai dijawab: median (batang) dan persentil ke-90 (garis)",
        bars,
        max_value=top,
        reference=ANSWER_CAP_HOURS,
        reference_label="14 hari",
    )


def weak_chart(report: dict[str, Any]) -> str:
    weak = report["weak_services"]
    bars = [
        Bar(w["label"], w["missed"], f"{_count(w['missed'])} terlambat ({_pct(w['share'])} tepat)")
        for w in weak
    ]
    top = max((w["missed"] for w in weak), default=1)
    return bar_chart(
        "chart-weak", "Layanan lemah: aduan tidak dijawab tepat waktu", bars, max_value=top
    )


_AGENCY_COLUMNS = (
    "Peringkat",
    "Perangkat daerah",
    "Diterima",
    "Tepat waktu",
    "Batas bawah 95%",
    "Respons pertama (median / p90, jam)",
    "Jawaban (median / p90, hari)",
    "Pelanggaran",
    "Rating",
    "Dibuka kembali",
)


def _figures_cells(row: dict[str, Any]) -> list[str]:
    c = row["answered_within_deadline"]
    first = row["time_to_first_response"]
    answer = row["time_to_answer"]
    answer_days = [
        _num(hours / 24 if hours is not None else None)
        for hours in (answer["median_hours"], answer["p90_hours"])
    ]
    return [
        _count(row["received"]),
        f"{_pct(c['share'])} ({_count(c['on_time'])}/{_count(c['due'])})",
        _pct(c["wilson_lower"]),
        f"{_num(first['median_hours'])} / {_num(first['p90_hours'])}",
        " / ".join(answer_days),
        _count(row["breaches"]["total"]),
        f"{_num(row['rating']['average'])} ({_count(row['rating']['n'])})",
        _pct(row["reopen"]["rate"]),
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _agency_title(row: dict[str, Any]) -> str:
    label = _agency_label(row)
    return label if label == row["name"] else f"{label} — {row['name']}"


def agency_table(report: dict[str, Any]) -> str:
    ordered = sorted(report["agencies"], key=lambda r: (r["rank"] is None, r["rank"] or 0))
    rows = [[str(r["rank"] or "–"), _agency_title(r), *_figures_cells(r)] for r in ordered]
    return _table(_AGENCY_COLUMNS, rows, "agencies")


def category_table(report: dict[str, Any]) -> str:
    names = _agency_labels(report)
    rows = [
        [r["label"], ", ".join(names.get(a, a) for a in r["agencies"][:3]), *_figures_cells(r)]
        for r in sorted(report["categories"], key=lambda r: (-r["received"], r["category"]))
    ]
    return _table(("Layanan", "Perangkat daerah", *_AGENCY_COLUMNS[2:]), rows, "categories")


def kecamatan_table(report: dict[str, Any]) -> str:
    rows = [
        [r["kecamatan"] if r["kecamatan"] != "unknown" else "–", r["name"], *_figures_cells(r)]
        for r in report.get("kecamatan") or []
    ]
    return _table(("Kode", "Kecamatan", *_AGENCY_COLUMNS[2:]), rows, "kecamatan")


_HOTSPOT_STATES = {
    "suggested": "diusulkan",
    "confirmed": "dikonfirmasi",
    "answered": "dijawab",
    "closed": "selesai",
}


def hotspot_section(report: dict[str, Any]) -> str:
    """The largest hotspots and their counts per agency and kecamatan; empty when the
    hotspots service never ran."""
    hotspots = report.get("hotspots")
    if hotspots is None:
        return ""
    largest = [
        [
            str(h["rank"]),
            h["agency_name"] or h["agency"],
            ", ".join(p for p in (h["desa_name"], h["kecamatan_name"]) if p) or "–",
            _count(h["size"]),
            _HOTSPOT_STATES.get(h["state"], h["state"]),
        ]
        for h in hotspots["largest"]
    ]
    agencies = [[a["agency"], a["name"], _count(a["hotspots"])] for a in hotspots["by_agency"]]
    places = [
        [k["kecamatan"] if k["kecamatan"] != "unknown" else "–", k["name"], _count(k["hotspots"])]
        for k in hotspots["by_kecamatan"]
    ]
    return (
        "<h2>Titik rawan (satu masalah, banyak pelapor)</h2>"
        f'<p class="note">{_count(hotspots["total"])} titik rawan dengan '
        f"{_count(hotspots['complaints'])} aduan dari warga yang berbeda tentang masalah yang "
        "sama di tempat yang sama.</p>"
        + _table(("#", "Perangkat daerah", "Tempat", "Aduan", "Status"), largest, "hotspots")
        + _table(("Kode", "Perangkat daerah", "Titik rawan"), agencies, "hotspot-agencies")
        + _table(("Kode", "Kecamatan", "Titik rawan"), places, "hotspot-kecamatan")
    )


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1f2933;
max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta,.note{color:#52606d;font-size:12px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #d9e2ec;border-radius:6px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:22px}
svg.chart{display:block;margin:8px 0 16px}
svg .title{font-size:14px;font-weight:600;fill:#1f2933}
svg .label,svg .value{font-size:12px;fill:#334e68}
svg .bar{fill:#2f80ed}svg .bar.muted{fill:#bcccdc}
svg .whisker{stroke:#102a43;stroke-width:2}svg .tick{stroke:#d64545;stroke-width:3}
svg .reference{stroke:#d64545;stroke-dasharray:4 3}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 6px;text-align:right}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
"""


def _cards(report: dict[str, Any]) -> str:
    t = report["totals"]
    cards = [
        ("Aduan diterima", _count(t["received"])),
        ("Dijawab tepat waktu", _pct(t["answered_within_deadline"]["share"])),
        ("Median waktu jawaban", _days(t["time_to_answer"]["median_hours"])),
        ("Pelanggaran batas waktu", _count(t["breaches"]["total"])),
        ("Rating rata-rata", _num(t["rating"]["average"])),
        ("Dicabut pelapor", _count(t["withdrawn"])),
    ]
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in cards)
        + "</div>"
    )


def _method(report: dict[str, Any]) -> str:
    m = report["method"]
    return (
        '<p class="note">Peringkat memakai batas bawah selang keyakinan Wilson 95% dari '
        "proporsi aduan yang dijawab dalam batas waktu, sehingga perangkat daerah dengan "
        "sedikit aduan tidak naik atau turun peringkat karena kebetulan; perangkat daerah "
        f"dengan kurang dari {m['min_volume']} aduan yang jatuh tempo tidak diberi peringkat. "
        "Aduan rahasia hanya dihitung jumlahnya. Respons pertama diukur dari disposisi, "
        "jawaban dari aduan diterima.</p>"
    )


def render_html(report: dict[str, Any]) -> str:
    period, zone = report["period"], _zone(report)
    first = _day(period["from"], zone) or "awal"
    last = _day(period["to"], zone, exclusive=True) or "sekarang"
    span = f"{first} – {last}"
    as_of = _moment(report["as_of"], zone)
    region = report.get("region_name") or report["region"] or "semua daerah"
    return (
        '<!DOCTYPE html><html lang="id"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Kinerja penanganan aduan — {escape(region)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Kinerja penanganan aduan — {escape(region)}</h1>"
        f'<p class="meta">Periode {escape(span)}; data per {escape(as_of)}</p>'
        + _cards(report)
        + "<h2>Peringkat perangkat daerah</h2>"
        + compliance_chart(report)
        + _method(report)
        + agency_table(report)
        + "<h2>Volume dan waktu</h2>"
        + received_chart(report)
        + answer_time_chart(report)
        + "<h2>Layanan lemah</h2>"
        + weak_chart(report)
        + "<h2>Per layanan</h2>"
        + category_table(report)
        + "<h2>Per kecamatan</h2>"
        + kecamatan_table(report)
        + hotspot_section(report)
        + "</body></html>"
    )
