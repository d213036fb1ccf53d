"""Build every report of one or more finished runs.

    from unlearnlm.reports import build_report
    paths = build_report([Path("runs/demo")])   # writes into runs/demo
    paths["html"]                                # runs/demo/report.html

Writes results.csv, results.md, figures/<name>.png, report.html and, when the runs were
attacked, robustness.csv (and a robustness section in the Markdown and HTML); prints the
tables to the console. Several runs are combined into one report (labels prefixed with
the run name), by default in a ``report/`` folder next to the first run directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.console import Console

from unlearnlm.errors import UnlearnError
from unlearnlm.io import write_text
from unlearnlm.reports.html import FIGURES, write_html
from unlearnlm.reports.robustness import robustness_markdown, write_robustness_csv
from unlearnlm.reports.runs import judge_line, load_results
from unlearnlm.reports.seeds import seeds_markdown
from unlearnlm.reports.table import print_table, render_markdown, results_table, write_csv


def default_out_dir(run_dirs: Sequence[Path]) -> Path:
    """The run directory itself for one run; ``<parent of the first>/report`` for several."""
    if len(run_dirs) == 1:
        return Path(run_dirs[0])
    return Path(run_dirs[0]).parent / "report"


def _markdown(results_list: list[dict], rows: list[dict]) -> str:
    lines = ["# Unlearning results", ""]
    for res in results_list:
        lines += [
            f"- **{res.get('run_name', '')}**: scenario {res.get('scenario', '?')}, "
            f"model {res.get('model', '?')}, forget {res.get('forget', '?')}. {judge_line(res)}."
        ]
    extra = [t for t in (seeds_markdown(results_list), robustness_markdown(results_list)) if t]
    return "\n".join(lines) + "\n\n" + render_markdown(rows) + "".join(f"\n{t}" for t in extra)


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None,
                 console: Console | None = None) -> dict[str, Path]:
    """Load each ``results.json`` and write the reports; returns {name: path}.

    Names: ``csv``, ``markdown``, ``html`` and one per drawn figure (``mu_fe``,
    ``heatmap``, and ``dynamics`` / ``continual`` when the runs have such rows).
    Raises UnlearnError naming the path when a run directory has no valid results.json."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise UnlearnError("no run directory given: pass at least one finished run directory")
    results_list = [load_results(d) for d in run_dirs]
    out = Path(out_dir) if out_dir is not None else default_out_dir(run_dirs)
    rows = results_table(results_list)
    paths: dict[str, Path] = {
        "csv": write_csv(rows, out / "results.csv"),
        "markdown": out / "results.md",
    }
    write_text(paths["markdown"], _markdown(results_list, rows))
    if write_robustness_csv(results_list, out / "robustness.csv") is not None:
        paths["robustness_csv"] = out / "robustness.csv"
    for name, (plot, _) in FIGURES.items():
        path = out / "figures" / f"{name}.png"
        if plot(results_list, path) is not None:
            paths[name] = path
    figures = {name: paths[name] for name in FIGURES if name in paths}
    paths["html"] = write_html(results_list, run_dirs, out / "report.html", figures=figures)
    print_table(results_list, console)
    return paths
