"""The pieces of the HTML report: its CSS, escaping and formatting, tables, notes, embedded
figures, and a section that turns its own error into a note."""

from __future__ import annotations

import html
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import figures as F

__all__ = ["CSS", "esc", "fmt", "badge", "table", "note", "fig_html", "Section", "guard"]

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --soft: #f6f8fa;
        --ok: #2e7d32; --van: #1565c0; --exp: #c62828; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 64px; }
header { border-bottom: 2px solid var(--line); margin-bottom: 12px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 34px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
nav { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; }
nav a { margin-right: 14px; color: var(--van); text-decoration: none; white-space: nowrap; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px;
      overflow-x: auto; font-size: 12px; line-height: 1.4; max-height: 420px; }
figure { margin: 12px 0 18px; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.note { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 6px; padding: 8px 12px;
        margin: 8px 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
         font-weight: 600; background: var(--muted); }
.badge.healthy { background: var(--ok); } .badge.vanishing { background: var(--van); }
.badge.exploding, .badge.nan, .badge.diverged { background: var(--exp); }
.badge.completed { background: var(--ok); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 140px;
        background: var(--soft); }
.card .k { color: var(--muted); font-size: 12px; } .card .v { font-size: 20px; font-weight: 600; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}={fmt(x)}" for k, x in v.items())
    return str(v)


def badge(text: Any) -> str:
    t = esc(text)
    return f'<span class="badge {t}">{t}</span>'


def table(head: list[str], rows: list[list[Any]], raw_cols: tuple[int, ...] = ()) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for k, v in enumerate(r):
            if k in raw_cols:
                cells.append(f"<td>{v}</td>")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{esc(fmt(v))}</td>')
            else:
                cells.append(f"<td>{esc(fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def fig_html(fig, caption: str, alt: str | None = None) -> str:
    """A ``<figure>`` with the figure embedded as a base64 PNG."""
    uri = F.data_uri(fig)
    return (f'<figure><img src="{uri}" alt="{esc(alt or caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


@dataclass
class Section:
    key: str
    title: str
    body: str


def guard(key: str, title: str, make: Callable[[], Section]) -> Section:
    """Run a section builder; on any error return a note with the error instead."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - one broken section must not sink the report
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Section(key, title, note(f"This section could not be built: {last}"))
