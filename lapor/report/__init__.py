"""Agency performance report: which agency answers citizens, which service fails.

Per agency and per service category: complaints received; time to first
response (assignment to the agency's first `in_progress`) and time to answer
(receipt to the first `responded`, or to the agency's closing when it closes
without a separate answer), each as median and 90th percentile; the share
answered within the answer deadline (among complaints answered or past their
deadline); breaches (from `sla_breaches` when that collection exists,
otherwise judged from each complaint's own deadlines); the average rating; the
reopen rate (complaints sent back from `responded`/`closed` to an open state,
per complaint that reached `responded` or `closed`).

Fair ranking. Agencies are ranked by the lower bound of the 95% Wilson score
interval of their on-time share, not by the raw share, and only once at least
`min_volume` (default 5) of their complaints are due. The Wilson bound is
chosen over a Bayesian prior because it needs no tuning (no prior strength to
argue about in front of the agencies it ranks), behaves well at 0% and 100%
where the normal approximation fails, and shrinks small samples exactly in
proportion to their uncertainty: 2 of 2 on time gives a lower bound of 34%,
below 90 of 100 (83%), so one lucky week does not top the table. The minimum
volume keeps agencies with a handful of complaints out of the league table
altogether; they are still listed with their figures, marked as not ranked.

Weak services: categories with at least `min_volume` complaints due whose
on-time share is below the region's, ordered by the number of complaints not
answered in time (many complaints and poor compliance both push a category up).

Confidential complaints contribute counts only: they add to their agency's
`received` and `confidential` counts and to the totals, and to nothing else
(no category, timing, rating or reopen figure). The report never contains a
complaint's text, tracking id or reporter, confidential or not.

Computation: `$match`/`$group`/`$sum` aggregations for counts and ratings, one
projected query (codes, timestamps and history states only) for the figures
that need Python, so it runs unchanged on MongoDB and FerretDB v1.
"""

from typing import Any

from lapor.report.build import (
    BreachRow,
    CountRow,
    Labels,
    RatingRow,
    ReportData,
    build_report,
)
from lapor.report.facts import ComplaintFacts, facts_from
from lapor.report.fetch import fetch_report_data
from lapor.report.html import render_html
from lapor.report.text import render_text


def __getattr__(name: str) -> Any:
    # The HTTP router pulls in FastAPI; the command line does not need it.
    if name == "report_router":
        from lapor.report.api import report_router

        return report_router
    raise AttributeError(name)


__all__ = [
    "BreachRow",
    "ComplaintFacts",
    "CountRow",
    "Labels",
    "RatingRow",
    "ReportData",
    "build_report",
    "facts_from",
    "fetch_report_data",
    "render_html",
    "render_text",
    "report_router",
]
