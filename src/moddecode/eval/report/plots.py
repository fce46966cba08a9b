"""PNG frontiers of a summarised sweep: every objective pair in 2-D, and up to MAX_TRIPLES triples in 3-D."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ..pareto import pareto_front
from ..sweep.layout import SINGLE_PREFIX
from .summary import Cell, Summary, Weights

MAX_TRIPLES = 4  # 3-D views drawn for at most this many objective triples


def _figure_module():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the report's plots need matplotlib: pip install 'moddecode[eval]'") from None
    return Figure


def _style(method: str, index: int) -> dict:
    """Weighted methods: coloured dots; single policies: dark markers of distinct shapes."""
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    if method.startswith(SINGLE_PREFIX):
        return {"color": "#333333", "marker": "*PXDvs^"[index % 7], "s": 150}
    return {"color": colors[index % len(colors)], "marker": "o", "s": 36}


def plot_pairs(s: Summary, out_dir: Path) -> list[Path]:
    """One PNG per pair of objectives: each method's mean points (95% CI bars), its front drawn as a line."""
    Figure = _figure_module()
    paths = []
    for i, j in itertools.combinations(range(len(s.objectives)), 2):
        fig = Figure(figsize=(6.4, 5.0), dpi=110)
        ax = fig.add_subplot()
        for k, m in enumerate(s.methods):
            ws, pts = s.points(m)
            style = _style(m, k)
            cells = [s.cells[(m, w)] for w in ws]
            xerr = _err(cells, i)
            yerr = _err(cells, j)
            ax.errorbar(pts[:, i], pts[:, j], xerr=xerr, yerr=yerr, fmt="none", ecolor=style["color"], alpha=0.25)
            single = m.startswith(SINGLE_PREFIX)  # hollow, so the MOD point at its one-hot weighting shows through
            ax.scatter(pts[:, i], pts[:, j], marker=style["marker"], s=style["s"], label=m, zorder=3 + single,
                       facecolors="none" if single else style["color"], edgecolors=style["color"],
                       linewidths=1.4 if single else 1.0)
            front = pareto_front(pts[:, [i, j]])
            if len(front) > 1:  # the method's frontier in this projection, left to right
                f = pts[front][np.argsort(pts[front][:, i])]
                ax.plot(f[:, i], f[:, j], color=style["color"], linewidth=1.6)
            if not m.startswith(SINGLE_PREFIX) and k == 0:
                for w, (x, y) in zip(ws, pts[:, [i, j]]):
                    ax.annotate(_wlabel(w), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                                color=style["color"])
        ax.set_xlabel(s.objectives[i])
        ax.set_ylabel(s.objectives[j])
        ax.set_title(f"Pareto frontiers: {s.objectives[i]} vs {s.objectives[j]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = out_dir / f"frontier_{_slug(s.objectives[i])}__{_slug(s.objectives[j])}.png"
        fig.savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


def plot_triples(s: Summary, out_dir: Path) -> list[Path]:
    """3-D views of the mean points for up to MAX_TRIPLES triples of objectives (3+ objectives only)."""
    Figure = _figure_module()
    paths = []
    for i, j, k in list(itertools.combinations(range(len(s.objectives)), 3))[:MAX_TRIPLES]:
        fig = Figure(figsize=(6.4, 5.4), dpi=110)
        ax = fig.add_subplot(projection="3d")
        for n, m in enumerate(s.methods):
            _, pts = s.points(m)
            style = _style(m, n)
            single = m.startswith(SINGLE_PREFIX)
            ax.scatter(pts[:, i], pts[:, j], pts[:, k], marker=style["marker"], s=style["s"], label=m,
                       facecolors="none" if single else style["color"], edgecolors=style["color"], depthshade=False)
        ax.set_xlabel(s.objectives[i])
        ax.set_ylabel(s.objectives[j])
        ax.set_zlabel(s.objectives[k])
        ax.set_title("mean scores, one point per method and weighting")
        ax.legend(fontsize=8)
        path = out_dir / f"frontier3d_{_slug(s.objectives[i])}__{_slug(s.objectives[j])}__{_slug(s.objectives[k])}.png"
        fig.savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


def _err(cells: list[Cell], i: int) -> np.ndarray:
    """[2, k] distances from the mean to the CI ends (clipped at 0 for errorbar)."""
    return np.array([[max(c.means[i].mean - c.means[i].low, 0) for c in cells],
                     [max(c.means[i].high - c.means[i].mean, 0) for c in cells]])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "objective"


def _wlabel(w: Weights) -> str:
    return "(" + ", ".join(f"{x:g}" for x in w) + ")"
