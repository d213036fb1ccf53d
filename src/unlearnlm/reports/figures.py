"""Paper-style figures of finished runs (matplotlib, Agg canvas, PNG at 150 dpi).

    from unlearnlm.reports.figures import plot_mu_fe, plot_heatmap, plot_dynamics, plot_continual
    fig = plot_mu_fe(results, "figures/mu_fe.png")     # returns the Figure; path=None: no file
    plot_privleak_fe(results, "figures/privleak_fe.png")  # None without privleak (no retain model)
    plot_dynamics(results, "figures/dynamics.png")     # None when there are no epoch rows

Each function takes one results dict or a list of them (rows concatenated, labels
prefixed with the run name when there are several) and returns the matplotlib Figure it
drew, so callers and tests can read the plotted data back from its Axes. Figures are
built without pyplot: nothing global is touched and nothing needs closing.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from unlearnlm.io import atomic_path
from unlearnlm.reports.runs import METRIC_SHORT, Results, is_final, number, report_rows, set_columns

DPI = 150
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def _figure(width: float, height: float) -> Figure:
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        data = png_bytes(fig)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return fig


def _colors(rows: list[dict[str, Any]], key: str = "series") -> dict[str, Any]:
    """One colour per method series (or other ``key``), the same in every figure of a report;
    tab10 up to ten names, tab20 beyond, so no two names share a colour below 21."""
    names = list(dict.fromkeys(row[key] for row in rows if not row["is_target"]))
    cycle = mpl.colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _mu_fe(row: dict[str, Any]) -> tuple[float | None, float | None]:
    return number(row["aggregates"].get("model_utility")), number(row["aggregates"].get("forget_efficacy"))


# Label placement in points: the axes span about 350 x 260 points; an 8-point label is about
# 6.5 points per character wide (a little more than the glyphs, to keep a gap).
_PT_X, _PT_Y, _PT_CHAR, _PT_LINE = 350.0, 260.0, 6.5, 9.0
_OFFSETS = (5, -11, 15, -21, 25, -31, 35, 45, 55, 65)


def _label_offset(placed: list[tuple[float, float, float, float]], fe: float, mu: float, label: str) -> int:
    """The first vertical offset (points) whose label box overlaps no label placed so far;
    appends the chosen box to ``placed``. Offsets below the point are skipped near MU = 0."""
    x0 = fe * _PT_X + 6
    x1 = x0 + _PT_CHAR * len(label)
    chosen = _OFFSETS[0]
    for dy in _OFFSETS:
        if dy < 0 and mu < 0.05:
            continue
        y0 = mu * _PT_Y + dy
        if not any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y0 + _PT_LINE for bx0, by0, bx1, by1 in placed):
            chosen = dy
            break
    y0 = mu * _PT_Y + chosen
    placed.append((x0, y0, x1, y0 + _PT_LINE))
    return chosen


_RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _error_bars(ax, row: dict[str, Any], fe: float, mu: float) -> None:
    """The row's 95% bootstrap intervals of FE (horizontal) and MU (vertical), when it has both."""
    ci = row.get("intervals") or {}
    fe_ci, mu_ci = ci.get("forget_efficacy"), ci.get("model_utility")
    if not (fe_ci and mu_ci):
        return
    ax.errorbar([fe], [mu], xerr=[[max(0.0, fe - fe_ci[0])], [max(0.0, fe_ci[1] - fe)]],
                yerr=[[max(0.0, mu - mu_ci[0])], [max(0.0, mu_ci[1] - mu)]], fmt="none", ecolor="grey",
                elinewidth=0.8, capsize=2, alpha=0.7, zorder=2, label="_interval")


def plot_mu_fe(results: Results | Sequence[Results], path: str | Path | None) -> Figure:
    """Model Utility (y) against Forget Efficacy (x): one point per final row, the target
    (the model before unlearning) a star, each with its 95% bootstrap intervals as error bars
    when the row has them.

    One run: each point is labelled with its method. Several runs: the colour is the method
    and the marker the run, explained in a legend (point labels would not fit), and targets
    that coincide (runs sharing one target) are drawn once. Rows that failed or lack MU or FE
    are not drawn (their labels are listed under the plot)."""
    with mpl.rc_context(STYLE):
        rows = [r for r in report_rows(results) if is_final(r)]
        runs = list(dict.fromkeys(r["run"] for r in rows))
        several = len(runs) > 1
        colors = _colors(rows, key="method")
        fig = _figure(7.4 if several else 5.6, 4.6)
        ax = fig.add_subplot()
        targets = {_mu_fe(r) for r in rows if r["is_target"] and not r["failed"]}
        missing, placed, stars = [], [], set()
        for row in rows:
            mu, fe = _mu_fe(row)
            if row["failed"] or mu is None or fe is None:
                missing.append(row["display"] + (" (failed)" if row["failed"] else ""))
                continue
            if row["is_target"]:
                if (fe, mu) in stars:
                    continue
                stars.add((fe, mu))
                ax.scatter([fe], [mu], marker="*", s=260, color="gold", edgecolor="black",
                           linewidth=0.8, zorder=3, label="target")
            else:
                marker = _RUN_MARKERS[runs.index(row["run"]) % len(_RUN_MARKERS)] if several else "o"
                ax.scatter([fe], [mu], marker=marker, s=55, color=colors[row["method"]],
                           edgecolor="black", linewidth=0.5, zorder=3, label=row["display"])
            _error_bars(ax, row, fe, mu)
            if not several or row["is_target"]:
                label = "target" if several and len(targets) == 1 else row["display"]
                dy = _label_offset(placed, fe, mu, label)
                ax.annotate(label, (fe, mu), xytext=(6, dy), textcoords="offset points", fontsize=8)
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), xlabel="Forget Efficacy (FE) \u2192",
               ylabel="Model Utility (MU) \u2192", title="Utility vs. forgetting")
        if several:
            ax.legend(handles=_mu_fe_legend(colors, runs), loc="center left", bbox_to_anchor=(1.01, 0.5),
                      fontsize=7, handletextpad=0.3)
        if missing:
            fig.text(0.01, 0.0, "not plotted: " + ", ".join(missing), fontsize=7, va="bottom",
                     color="dimgray")
            fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
    return _save(fig, path)


def _mu_fe_legend(colors: dict[str, Any], runs: list[str]) -> list[Line2D]:
    """Legend entries: a coloured dot per method, then a grey marker per run."""
    def entry(label, marker, color):
        return Line2D([], [], linestyle="none", marker=marker, markersize=6, color=color,
                      markeredgecolor="black", markeredgewidth=0.5, label=label)
    return ([entry(method, "o", color) for method, color in colors.items()]
            + [entry(run, _RUN_MARKERS[i % len(_RUN_MARKERS)], "lightgray") for i, run in enumerate(runs)])


def plot_privleak_fe(results: Results | Sequence[Results], path: str | Path | None) -> Figure | None:
    """privleak (y; 0 = like the retain model, -100 = like the target, > 0 over-unlearned) against
    Forget Efficacy (x): the MU/FE figure's companion, one colour per method in a legend (points
    crowd at -100), the target a star drawn once. None when no row has privleak."""
    with mpl.rc_context(STYLE):
        rows = [r for r in report_rows(results) if is_final(r) and not r["failed"]
                and number(r["aggregates"].get("privleak")) is not None
                and number(r["aggregates"].get("forget_efficacy")) is not None]
        if not rows:
            return None
        colors = _colors(rows, key="method")
        fig = _figure(7.4, 4.6)
        ax = fig.add_subplot()
        ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--", zorder=1)
        drawn: set = set()
        for row in rows:
            fe, leak = number(row["aggregates"]["forget_efficacy"]), number(row["aggregates"]["privleak"])
            if row["is_target"]:
                if (fe, leak) not in drawn:
                    ax.scatter([fe], [leak], marker="*", s=260, color="gold", edgecolor="black", linewidth=0.8,
                               zorder=3, label="target")
                drawn.add((fe, leak))
            else:
                ax.scatter([fe], [leak], s=55, color=colors[row["method"]], edgecolor="black", linewidth=0.5,
                           zorder=3, label=row["display"])
        leaks = [number(r["aggregates"]["privleak"]) for r in rows]
        ax.set(xlim=(-0.03, 1.03), ylim=(min(-110.0, min(leaks) - 10), max(25.0, max(leaks) + 10)),
               xlabel="Forget Efficacy (FE) \u2192", ylabel="privleak (0 = retain model)",
               title="Membership leakage vs. forgetting")
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
        return _save(fig, path)


def plot_heatmap(results: Results | Sequence[Results], path: str | Path | None) -> Figure:
    """Per-set metric means: rows = final rows (target first as recorded), columns = set/metric."""
    with mpl.rc_context(STYLE):
        rows = [r for r in report_rows(results) if is_final(r)]
        columns = [(s, m) for s, metrics in set_columns(rows) for m in metrics]
        values = [[number(r["sets"].get(s, {}).get(m)) for s, m in columns] for r in rows]
        grid = [[math.nan if v is None else v for v in line] for line in values]
        fig = _figure(max(4.0, 1.6 + 0.48 * len(columns)), 1.5 + 0.36 * max(1, len(rows)))
        ax = fig.add_subplot()
        ax.grid(False)
        cmap = mpl.colormaps["viridis"].with_extremes(bad="#dddddd")
        image = ax.imshow(grid or [[math.nan]], cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i, line in enumerate(values):
            for j, v in enumerate(line):
                text = "\u2013" if v is None else f"{v:.2f}"
                color = "black" if v is None or v > 0.6 else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
        ax.set_yticks(range(len(rows)), [r["display"] + (" (failed)" if r["failed"] else "")
                                         for r in rows])
        ax.set_xticks(range(len(columns)), [METRIC_SHORT.get(m, m) for _, m in columns], fontsize=8)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        start = 0
        for set_name, metrics in set_columns(rows):
            center = start + (len(metrics) - 1) / 2
            ax.text(center, -0.75, set_name.replace("_", " "), ha="center", va="bottom",
                    fontsize=9, fontweight="bold")
            if start:
                ax.axvline(start - 0.5, color="white", linewidth=3)
            start += len(metrics)
        ax.set_ylim(len(rows) - 0.5, -1.2)
        fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01,
                     label="score (forget: lower = more forgotten)")
    return _save(fig, path)


_LINE_PANELS = (("model_utility", "Model Utility (MU)"), ("mu_retain", "MU Retain"),
                ("forget_efficacy", "Forget Efficacy (FE)"))


def _lines(results: Results | Sequence[Results], path: str | Path | None, key: str,
           xlabel: str, title: str) -> Figure | None:
    """MU, MU Retain and FE per ``key`` (epoch or task) for each method, the target as a dashed
    line. MU Retain shows the trend that MU, a harmonic mean of 18 small-sample scores, can hide."""
    rows = report_rows(results)
    if key == "epoch":
        points = [r for r in rows if r.get("epoch") is not None and r.get("task") is None]
    else:
        points = [r for r in rows if r.get("task") is not None and r.get("epoch") is None]
    points = [r for r in points if not r["failed"]]
    if not points:
        return None
    with mpl.rc_context(STYLE):
        colors = _colors(rows)
        fig = _figure(12.0, 3.6)
        axes = fig.subplots(1, len(_LINE_PANELS))
        targets = [r for r in rows if r["is_target"] and is_final(r) and not r["failed"]]
        for ax, (aggregate, name) in zip(axes, _LINE_PANELS):
            for series in dict.fromkeys(r["series"] for r in points):
                values = ((r[key], number(r["aggregates"].get(aggregate))) for r in points if r["series"] == series)
                pts = sorted((x, y) for x, y in values if y is not None)
                if pts:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=4,
                            color=colors.get(series), label=series)
            for target in targets:
                value = number(target["aggregates"].get(aggregate))
                if value is not None:
                    ax.axhline(value, color="gray", linestyle="--", linewidth=1,
                               label=f"{target['display']} (before)")
            ax.set(xlabel=xlabel, ylabel=name, ylim=(-0.03, 1.03))
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
        fig.suptitle(title)
    return _save(fig, path)


def plot_dynamics(results: Results | Sequence[Results], path: str | Path | None) -> Figure | None:
    """Unlearning dynamics: MU, MU Retain and FE after each epoch; None (no file) without epoch rows."""
    return _lines(results, path, "epoch", "epoch", "Unlearning dynamics")


def plot_continual(results: Results | Sequence[Results], path: str | Path | None) -> Figure | None:
    """Continual unlearning: MU, MU Retain and FE after each task; None (no file) without task rows."""
    return _lines(results, path, "task", "task", "Continual unlearning")
