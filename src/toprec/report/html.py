"""One self-contained HTML page (inline CSS, figures as base64 PNG) plus its JSON.

A :class:`Page` is a list of sections; each section has explanatory text,
tables (rows of numbers) and figures. The JSON written beside the page holds
every table and every figure's plotted data, under the section's id, so any
number on the page can be found there.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_path
from .plots import Figure

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fff}
main{max-width:1100px;margin:0 auto;padding:1.5em}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#666;font-size:.9em} nav{background:#f6f8fa;border:1px solid #e1e4e8;padding:.6em 1.2em;border-radius:6px}
nav ol{margin:.3em 0;padding-left:1.4em} p.note{color:#444;font-size:.95em;line-height:1.45}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em} th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f6f8fa;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.6em .4em .6em 0;display:inline-block;vertical-align:top;max-width:49%}
figure img{max-width:100%;border:1px solid #eee} figcaption{font-size:.85em;color:#555}
""".strip()


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": [[_jsonable(c) for c in r] for r in self.rows]}


@dataclass
class Section:
    id: str
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)  # headline numbers (also shown as a table)
    data: dict[str, Any] = field(default_factory=dict)  # JSON only: arrays behind the tables (per-user metrics)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
        t = Table(title, list(columns), [list(r) for r in rows])
        self.tables.append(t)
        return t


@dataclass
class Page:
    title: str
    meta: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def section(self, sid: str, title: str) -> Section:
        s = Section(sid, title)
        self.sections.append(s)
        return s

    def figures(self) -> dict[str, Figure]:
        return {f.id: f for s in self.sections for f in s.figures}

    # ------------------------------------------------------------ output
    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "meta": self.meta,
            "sections": {
                s.id: {
                    "title": s.title,
                    "numbers": _jsonable(s.numbers),
                    "tables": [t.to_json() for t in s.tables],
                    "figures": {f.id: _jsonable(f.to_json()) for f in s.figures},
                    **({"data": _jsonable(s.data)} if s.data else {}),
                }
                for s in self.sections
            },
        }

    def to_html(self) -> str:
        e = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.title)}</title><style>{CSS}</style></head><body><main>",
            f"<h1>{e(self.title)}</h1>",
        ]
        parts += [f'<p class="meta">{e(m)}</p>' for m in self.meta]
        parts.append('<nav><strong>Contents</strong><ol>')
        parts += [f'<li><a href="#{e(s.id)}">{e(s.title)}</a></li>' for s in self.sections]
        parts.append("</ol></nav>")
        for s in self.sections:
            parts.append(f'<section id="{e(s.id)}"><h2>{e(s.title)}</h2>')
            parts += [f'<p class="note">{e(t)}</p>' for t in s.text]
            if s.numbers:
                parts.append(_table_html(Table("", ["quantity", "value"], [[k, v] for k, v in _flat(s.numbers)])))
            parts += [_table_html(t) for t in s.tables]
            for f in s.figures:
                parts.append(
                    f'<figure id="fig-{e(f.id)}"><img alt="{e(f.title)}" data-figure="{e(f.id)}" '
                    f'src="data:image/png;base64,{f.base64}">'
                    + (f"<figcaption>{e(f.caption)}</figcaption>" if f.caption else "")
                    + "</figure>"
                )
            parts.append("</section>")
        parts.append("</main></body></html>")
        return "\n".join(parts) + "\n"

    def write(self, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.html`` and ``<stem>.json`` into ``out_dir`` (each atomically)."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            from ..errors import ToprecError

            raise ToprecError(f"{out}: exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        html_path, json_path = out / f"{stem}.html", out / f"{stem}.json"
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n")
        with atomic_path(html_path) as tmp:
            tmp.write_text(self.to_html(), encoding="utf-8")
        return html_path, json_path


def _flat(d: dict[str, Any], prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flat(v, key + ".")
        else:
            yield key, v


def fmt(v: Any) -> str:
    """How a number is shown on the page (the JSON keeps full precision)."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3g}"
        if abs(v) >= 100 or (v.is_integer() and abs(v) >= 10):
            return f"{v:,.0f}" if v.is_integer() else f"{v:,.1f}"
        return f"{v:.4f}"
    if v is None:
        return "–"
    return str(v)


def _is_float(v: Any) -> bool:
    return isinstance(v, (float, np.floating)) and not isinstance(v, (bool, np.bool_))


def column_formats(rows: list) -> dict[int, Any]:
    """One format per column of small floats (all below 100): the same decimals for every cell, enough for
    the smallest non-zero value to keep 3 significant digits (4 at least, 8 at most), so 0.000502 and 0 are
    shown as 0.000502 and 0.000000, not 0.000502 and 0.0000."""
    formats: dict[int, Any] = {}
    for j in range(max((len(r) for r in rows), default=0)):
        cells = [r[j] for r in rows if j < len(r)]
        floats = [float(c) for c in cells if _is_float(c) and math.isfinite(float(c))]
        if not floats or any(abs(v) >= 100 for v in floats) or any(
                not _is_float(c) and isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in cells):
            continue
        smallest = min((abs(v) for v in floats if v != 0), default=1.0)
        decimals = min(8, max(4, 2 - math.floor(math.log10(smallest))))
        formats[j] = lambda v, d=decimals: f"{float(v):.{d}f}" if math.isfinite(float(v)) else "–"
    return formats


def _table_html(t: Table) -> str:
    e = html.escape
    out = ["<table>"]
    if t.title:
        out.append(f"<caption style='text-align:left;font-weight:bold'>{e(t.title)}</caption>")
    out.append("<tr>" + "".join(f"<th>{e(str(c))}</th>" for c in t.columns) + "</tr>")
    formats = column_formats(t.rows)
    for r in t.rows:
        cells = []
        for j, c in enumerate(r):
            numeric = isinstance(c, (int, float, np.integer, np.floating)) and not isinstance(c, bool)
            text = formats[j](c) if j in formats and _is_float(c) else fmt(c)
            cells.append(f"<td class='n'>{e(text)}</td>" if numeric else f"<td>{e(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v
