"""Plots for the HTML report, drawn with matplotlib and returned as inline SVG (the page stays one
self-contained file). Text stays text (``svg.fonttype: none``, escaped by matplotlib), so labels
can be searched and read by screen readers; each point carries an SVG id (``gid``) naming it.
"""

from __future__ import annotations

import io
from typing import Any, Iterator
from contextlib import contextmanager

#: A point: (label, x value dict, y value dict); value dicts have ``value`` and optional ``ci95``.
Point = tuple[str, dict[str, Any], dict[str, Any]]


@contextmanager
def figure(width: float = 5.0, height: float = 3.4) -> Iterator[tuple[Any, Any, list[str]]]:
    """A matplotlib figure and axes (Agg backend); the SVG text is appended to the yielded list on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[str] = []
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "erasekit"}):
        fig, ax = plt.subplots(figsize=(width, height), dpi=100)
        try:
            yield fig, ax, out
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
        finally:
            plt.close(fig)
    svg = buf.getvalue()
    out.append(svg[svg.index("<svg"):])  # drop the XML prolog and doctype: the SVG sits inside HTML


def _err(v: dict[str, Any]) -> list[list[float]] | None:
    ci = v.get("ci95")
    if not ci:
        return None
    return [[max(0.0, v["value"] - ci[0])], [max(0.0, ci[1] - v["value"])]]


def scatter_svg(points: list[Point], xlabel: str, ylabel: str, gid: str) -> str:
    """One labelled point per entry with its 95% intervals as error bars, both axes in [0, 1]
    (values outside are drawn at the edge). Point ``k`` has the SVG id ``{gid}-{k}``."""
    with figure() as (fig, ax, out):
        for k, (label, x, y) in enumerate(points):
            px, py = min(max(x["value"], 0.0), 1.0), min(max(y["value"], 0.0), 1.0)
            bars = ax.errorbar(px, py, xerr=_err(x), yerr=_err(y), fmt="o", color=f"C{k % 10}", capsize=2, lw=0.8,
                               alpha=0.9)
            bars.lines[0].set_gid(f"{gid}-{k}")
            ax.annotate(label, (px, py), textcoords="offset points", xytext=(-6 if px > 0.6 else 6, 6 + 10 * (k % 3)),
                        ha="right" if px > 0.6 else "left", fontsize=8, color=f"C{k % 10}")
        if not points:
            ax.text(0.5, 0.5, "no runs with both metrics", ha="center", va="center", color="#999")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return out[0]


def curves_svg(series: list[tuple[str, list[tuple[int, float]]]], xlabel: str, ylabel: str, gid: str) -> str:
    """One step curve per entry ``(label, [(x, y), ...])`` (y in [0, 1], held until the next point),
    labelled in a legend. Curve ``k`` has the SVG id ``{gid}-{k}``."""
    with figure(5.0, 3.0) as (fig, ax, out):
        for k, (label, points) in enumerate(series):
            xs, ys = zip(*points)
            (line,) = ax.step(xs, ys, where="post", color=f"C{k % 10}", lw=1.2, label=label)
            line.set_gid(f"{gid}-{k}")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7, loc="lower right")
    return out[0]
