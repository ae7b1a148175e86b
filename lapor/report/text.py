"""The report as plain text for a terminal or an e-mail body."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return f"{value * 100:5.1f}%" if value is not None else "    –"


def _h(value: float | None) -> str:
    return f"{value:7.1f}" if value is not None else "      –"


def render_text(report: dict[str, Any]) -> str:
    totals = report["totals"]
    period = report["period"]
    lines = [
        f"Agency performance — {report['region'] or 'all regions'}",
        f"period {period['from'] or 'start'} .. {period['to'] or 'now'}; as of {report['as_of']}",
        f"received {totals['received']}  (confidential {totals['confidential']}, "
        f"rejected {totals['rejected']}, withdrawn {totals['withdrawn']})  "
        f"on time {_pct(totals['answered_within_deadline']['share'])}  "
        f"breaches {totals['breaches']['total']}",
        "",
        f"{'rank':>4}  {'agency':<12} {'recv':>5} {'on time':>7} {'low95':>6} "
        f"{'1st resp h':>10} {'answer h':>8} {'p90 h':>7} "
        f"{'breach':>6} {'rating':>6} {'reopen':>6}",
    ]
    ordered = sorted(report["agencies"], key=lambda r: (r["rank"] is None, r["rank"] or 0))
    for row in ordered:
        c = row["answered_within_deadline"]
        rank = str(row["rank"]) if row["rank"] else "-"
        rating = row["rating"]["average"]
        lines.append(
            f"{rank:>4}  {row['agency']:<12} {row['received']:>5} {_pct(c['share']):>7} "
            f"{_pct(c['wilson_lower']):>6} {_h(row['time_to_first_response']['median_hours']):>10} "
            f"{_h(row['time_to_answer']['median_hours']):>8} "
            f"{_h(row['time_to_answer']['p90_hours']):>7} {row['breaches']['total']:>6} "
            f"{(f'{rating:.1f}' if rating is not None else '-'):>6} "
            f"{_pct(row['reopen']['rate']):>6}"
        )
    lines += ["", "weak services (most complaints answered late, compliance below average):"]
    for weak in report["weak_services"]:
        lines.append(
            f"  {weak['label']:<40} missed {weak['missed']:>4} of {weak['due']:>4} due "
            f"({_pct(weak['share'])} on time)"
        )
    if not report["weak_services"]:
        lines.append("  none")
    lines += ["", f"by kecamatan:  {'recv':>5} {'on time':>7} {'answer h':>8}"]
    for row in report.get("kecamatan") or []:
        lines.append(
            f"  {row['kecamatan']:<9} {row['name']:<22} {row['received']:>5} "
            f"{_pct(row['answered_within_deadline']['share']):>7} "
            f"{_h(row['time_to_answer']['median_hours']):>8}"
        )
    lines += _hotspot_lines(report.get("hotspots"))
    return "\n".join(lines) + "\n"


def _hotspot_lines(hotspots: dict[str, Any] | None) -> list[str]:
    if hotspots is None:
        return []
    lines = [
        "",
        f"hotspots (one problem, many reporters): {hotspots['total']} "
        f"({hotspots['open']} open) with {hotspots['complaints']} complaints",
    ]
    for h in hotspots["largest"]:
        place = ", ".join(p for p in (h["desa_name"], h["kecamatan_name"]) if p) or "?"
        lines.append(
            f"  {h['rank']:>2}. {h['agency']:<12} {place:<36} {h['size']:>3} reports  {h['state']}"
        )
    per_agency = ", ".join(f"{a['agency']} {a['hotspots']}" for a in hotspots["by_agency"])
    per_kecamatan = ", ".join(f"{k['name']} {k['hotspots']}" for k in hotspots["by_kecamatan"])
    lines.append(f"  per agency: {per_agency or 'none'}")
    lines.append(f"  per kecamatan: {per_kecamatan or 'none'}")
    return lines
