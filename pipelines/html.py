"""Self-contained HTML pages (the monitor's and the lifecycle report): one file, no server,
no network. Plots are matplotlib figures embedded as PNG data; tables are pandas' HTML,
sortable by a click on a column header (a few lines of inline script)."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from clm.output_paths import HTML_SIGNATURE

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0; color: #1f2937; }
header { background: #0f766e; color: white; padding: 1.2em 2em; }
header h1 { margin: 0 0 .2em 0; font-size: 1.6em; }
nav { padding: .6em 2em; background: #f1f5f9; position: sticky; top: 0; }
nav a { margin-right: 1.2em; color: #0f766e; text-decoration: none; font-weight: 600; }
main { padding: 0 2em 3em 2em; max-width: 1200px; }
section { margin-top: 2em; }
h2 { border-bottom: 2px solid #0f766e; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #d1d5db; padding: .3em .6em; text-align: right; }
th { background: #f8fafc; cursor: pointer; }
td:first-child, th:first-child { text-align: left; }
.flag { color: #b91c1c; font-weight: 700; }
.ok { color: #15803d; font-weight: 700; }
.note { color: #4b5563; font-size: .92em; max-width: 60em; }
img { max-width: 100%; }
.lead { font-size: 1em; max-width: 60em; margin: .3em 0; }
details { margin: .4em 0; color: #4b5563; font-size: .92em; }
summary { cursor: pointer; color: #0f766e; }
.text-last td:last-child, .text-last th:last-child { text-align: left; }
"""

# Click a header to sort its table by that column (numbers as numbers).
SCRIPT = """
document.querySelectorAll("table").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var up = th.dataset.order !== "up";
      th.dataset.order = up ? "up" : "down";
      rows.sort(function (a, b) {
        var x = a.cells[column].innerText, y = b.cells[column].innerText;
        var nx = parseFloat(x.replace(/,/g, "")), ny = parseFloat(y.replace(/,/g, ""));
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
document.body.dataset.ready = "yes";
"""


@dataclass(frozen=True)
class Section:
    id: str  # the anchor, and what a test looks for
    title: str
    body: str  # HTML


def escape(text: object) -> str:
    return html.escape(str(text))


def paragraph(text: str, css: str = "note") -> str:
    return f'<p class="{css}">{escape(text)}</p>'


def number(value: float, digits: int = 3) -> str:
    """Whole units from 100 up (with thousands separators), else `digits` significant places."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as an HTML table (numbers by `number`)."""
    if frame.empty:
        return paragraph("(nothing to show)")
    return frame.to_html(index=False, border=0, na_rep="", float_format=lambda v: number(v, digits), escape=True)


def figure(fig: Figure) -> str:
    """A matplotlib figure as an embedded PNG (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.id}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{HTML_SIGNATURE}"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><div>{escape(subtitle)}</div></header>"
        f"<nav>{nav}</nav><main>{body}</main><script>{SCRIPT}</script></body></html>\n"
    )
