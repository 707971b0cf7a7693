"""One self-contained HTML page about an experiment: what ran, what won, what mattered.

Everything is inline (figures as base64 PNG data URIs, the CSS, and a small script
for the interactive parallel-coordinates view), so the file opens offline and can be
mailed or archived as it is. Text from the experiment is escaped; the script gets its
data as JSON. The figures come from plot.py; this package only chooses and arranges:
data.py computes what the sections show, html.py writes it out, report.css and
report.js are the page's style and script, inlined when it is rendered.
"""

from __future__ import annotations

from .data import (
    NEAR_BEST,
    Param,
    ParamSummary,
    ReportData,
    ValueSummary,
    parallel_data,
    parallel_params,
    param_summaries,
    report_data,
    searched_settings,
    summary_params,
)
from .html import REPORT_FILE, SECTIONS, render_report, write_report

__all__ = [
    "NEAR_BEST",
    "REPORT_FILE",
    "SECTIONS",
    "Param",
    "ParamSummary",
    "ReportData",
    "ValueSummary",
    "parallel_data",
    "parallel_params",
    "param_summaries",
    "render_report",
    "report_data",
    "searched_settings",
    "summary_params",
    "write_report",
]
