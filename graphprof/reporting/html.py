"""The HTML and plotting helpers of the report: escaping, tables, figures rendered with the Agg canvas and
embedded as base64 PNG, and the style sheet."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right;font-size:90%}th{background:#f3f3f3}td.l,th.l{text-align:left}"
        ".missing{background:#fff8e1;border:1px solid #e0c060;padding:.3em 1em}.note{color:#555}"
        ".warn{color:#a00}img{max-width:100%;display:block;margin:.5em 0}code{background:#f3f3f3}")


@dataclass
class Section:
    """One section of the report: its anchor, heading and HTML body."""

    key: str
    title: str
    body: str


def esc(value) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value))


def plot_text(value, limit: int = 24) -> str:
    """User text for a plot: shortened, and ``$`` escaped so matplotlib never parses it as mathtext."""
    text = str(value)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def html_table(header: list[str], rows: list[list], left: tuple[int, ...] = (0,)) -> str:
    """An HTML table; every cell escaped; the columns ``left`` (text) left-aligned, the rest right."""
    def cells(tag, row):
        return "".join(f'<{tag}{" class=l" if j in left else ""}>{esc(c)}</{tag}>' for j, c in enumerate(row))
    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def figure(width: float, height: float, ncols: int = 1, nrows: int = 1, height_ratios=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, height_ratios=height_ratios)


def png_img(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version string: same bytes everywhere
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def mean_std(summary: dict | None) -> str:
    if not summary or summary.get("mean") is None:
        return "n/a"
    return f"{summary['mean']:.3f} ± {summary.get('std') or 0.0:.3f}"


def note(what: str, command: str, extra: str = "") -> tuple[str, str, str]:
    """A missing section: what it is, the command that produces it, and an aside."""
    return what, command, extra
