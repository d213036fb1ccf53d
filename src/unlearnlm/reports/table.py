"""Flat result tables: CSV, Markdown and the console.

    from unlearnlm.reports.table import results_table, write_csv, render_markdown, print_table
    rows = results_table(results)          # one dict per results.json row
    write_csv(rows, "results.csv")         # full precision, empty cell for null
    print(render_markdown(rows))           # 3 decimals
    print_table(results)                   # rich: aggregates, then one table per set

Columns: run, label, method, task, epoch, lr, status, error, MU, FE, MU_retain, FQ,
TOFU_MU, the privacy aggregates, each lm-eval task and its stderr (``mmlu_offline``,
``mmlu_offline_stderr``), then ``<set>/<metric>`` (e.g. ``forget/rouge``); every aggregate
column C is followed by C_lo and C_hi, its 95% bootstrap interval where one was computed.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from unlearnlm.io import write_text
from unlearnlm.reports.runs import (
    METRIC_LONG,
    METRIC_SHORT,
    Results,
    aggregate_columns,
    as_list,
    fmt,
    is_final,
    judge_line,
    number,
    report_rows,
    set_columns,
)

ID_COLUMNS = ("run", "label", "method", "task", "epoch", "lr", "status", "error")
# The 95% bootstrap interval of an aggregate column C: columns C_lo and C_hi in the CSV, one
# "value [lo, hi]" cell in Markdown.
LOW, HIGH = "_lo", "_hi"


def results_table(results: Results | Sequence[Results]) -> list[dict[str, Any]]:
    """One flat dict per row of every run; numbers as in results.json (None for null)."""
    rows = report_rows(results)
    columns = set_columns(rows)
    aggregates = aggregate_columns(rows)
    table = []
    for row in rows:
        flat: dict[str, Any] = {
            "run": row["run"],
            "label": row["display"],
            "method": row.get("method"),
            "task": row.get("task"),
            "epoch": row.get("epoch"),
            "lr": row.get("lr"),
            "status": row.get("status", "ok"),
            "error": row.get("error"),
        }
        for column, key in aggregates:
            flat[column] = number(row["aggregates"].get(key))
            bounds = (row.get("intervals") or {}).get(key) or (None, None)
            flat[f"{column}{LOW}"], flat[f"{column}{HIGH}"] = number(bounds[0]), number(bounds[1])
        for set_name, metrics in columns:
            values = row["sets"].get(set_name, {})
            for metric in metrics:
                flat[f"{set_name}/{metric}"] = number(values.get(metric))
        table.append(flat)
    return table


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as CSV (atomically); floats at full precision, null as an empty cell."""
    buf = io.StringIO()
    columns = _columns(rows)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    write_text(path, buf.getvalue())
    return Path(path)


def _shown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns worth a reader's attention: label, status, then any column with a value."""
    keep = ["label", "status"]
    for column in _columns(rows):
        if column in keep or column in ("run", "error") or column.endswith((LOW, HIGH)):
            continue
        if column in ("MU", "FE") or any(row.get(column) is not None for row in rows):
            keep.append(column)
    return keep


def _short(column: str) -> str:
    set_name, _, metric = column.partition("/")
    return f"{set_name}/{METRIC_SHORT.get(metric, metric)}" if metric else column


def _status(row: Mapping[str, Any]) -> str:
    if row.get("status", "ok") == "ok":
        return "ok"
    return f"{row.get('status')}: {row.get('error') or 'no error recorded'}"


def _md_cell(row: Mapping[str, Any], column: str) -> str:
    if column == "status":
        text = _status(row)
    elif column in ID_COLUMNS:
        text = "" if row.get(column) is None else str(row[column])
    else:
        text = fmt(row.get(column))
        low, high = row.get(column + LOW), row.get(column + HIGH)
        if row.get(column) is not None and low is not None and high is not None:
            text += f" [{fmt(low)}, {fmt(high)}]"
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``results_table`` rows (3 decimals), then a legend.
    ``columns``: these columns only (e.g. ``["label", "MU", "FE"]``), else every one with a value."""
    columns = list(columns) if columns else _shown(rows)
    lines = [
        "| " + " | ".join(_short(c) for c in columns) + " |",
        "| " + " | ".join("---" if c in ID_COLUMNS else "---:" for c in columns) + " |",
    ]
    lines += ["| " + " | ".join(_md_cell(r, c) for c in columns) + " |" for r in rows]
    legend = ", ".join(f"{s} = {METRIC_LONG[m]}" for m, s in METRIC_SHORT.items())
    lines += ["", f"MU = Model Utility, FE = Forget Efficacy, FQ = Forget Quality; {legend}. "
              "[lo, hi]: 95% bootstrap interval (questions resampled within each set)."]
    return "\n".join(lines) + "\n"


def _label_cell(row: Mapping[str, Any]) -> str:
    return ("[bold]" if row["is_target"] else "") + escape(row["display"])


def _aggregate_table(title: str, rows: list[dict[str, Any]]) -> Table:
    keys = [(c, k) for c, k in aggregate_columns(rows)
            if c in ("MU", "FE") or any(number(r["aggregates"].get(k)) is not None for r in rows)]
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("label", no_wrap=True)
    for column, _ in keys:
        table.add_column(column, justify="right")
    notes = any(row["failed"] for row in rows)
    if notes:  # failures get their own column so the number columns stay narrow
        table.add_column("note", style="red")
    for row in rows:
        if row["failed"]:
            cells = ["[red]failed", *[""] * (len(keys) - 1), escape(_status(row))]
        else:
            cells = [_console_cell(row, k) for _, k in keys] + ([""] if notes else [])
        table.add_row(_label_cell(row), *cells)
    return table


def _console_cell(row: Mapping[str, Any], key: str) -> str:
    """The aggregate and, dimmed beside it, its 95% interval when there is one."""
    value, bounds = row["aggregates"].get(key), (row.get("intervals") or {}).get(key)
    if value is None or not bounds:
        return fmt(value)
    return f"{fmt(value)} [dim][{fmt(bounds[0])}, {fmt(bounds[1])}][/dim]"


def _set_table(set_name: str, metrics: list[str], rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"set: {set_name}", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("label", no_wrap=True)
    for metric in metrics:
        table.add_column(METRIC_SHORT.get(metric, metric), justify="right")
    for row in rows:
        if row["failed"]:
            table.add_row(_label_cell(row), "[red]failed", *[""] * (len(metrics) - 1))
        else:
            values = row["sets"].get(set_name, {})
            table.add_row(_label_cell(row), *[fmt(values.get(m)) for m in metrics])
    return table


def print_table(results: Results | Sequence[Results], console: Console | None = None) -> None:
    """Print, per run, the aggregate table and one compact table per evaluation set."""
    console = console or Console()
    legend = ", ".join(f"{s} {METRIC_LONG[m]}" for m, s in METRIC_SHORT.items())
    for run_results in as_list(results):
        rows = report_rows(run_results)
        title = (
            f"{run_results.get('run_name', '')} | {run_results.get('scenario', '?')} | "
            f"model {run_results.get('model', '?')} | forget {run_results.get('forget', '?')}"
        )
        console.print(_aggregate_table(escape(title), rows))
        final = [row for row in rows if is_final(row)]  # epoch/task snapshots: see the CSV
        for set_name, metrics in set_columns(rows):
            console.print(_set_table(set_name, metrics, final))
        console.print(f"{legend}.\n{judge_line(run_results)}", style="dim", markup=False)
