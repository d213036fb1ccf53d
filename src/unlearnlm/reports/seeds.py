"""Across-seed summaries of runs with ``seeds=[...]`` (docs/method.md, section 7).

    groups = seed_groups(results_list)      # [{"method", "seeds", "stats": {key: {...}}}]
    text = seeds_markdown(results_list)     # "" when no method ran under two seeds or more

For each method unlearned under several seeds and each headline aggregate: the mean over seeds,
the sample standard deviation across seeds (ddof = 1), the range, and the mean half-width of
the per-seed 95% bootstrap intervals. The two spreads answer different questions: the bootstrap
says how much the number would move with other questions, the seeds how much it moves when the
same unlearning is run again.
"""
from __future__ import annotations

import statistics
from html import escape
from typing import Any, Mapping, Sequence

from unlearnlm.reports.runs import Results, as_list, is_final, number

SEED_AGGREGATES = (("MU", "model_utility"), ("MU_retain", "mu_retain"), ("FE", "forget_efficacy"),
                   ("FQ", "forget_quality"), ("privleak", "privleak"))


def _stats(rows: Sequence[Mapping[str, Any]], key: str) -> dict | None:
    values = [number(r["aggregates"].get(key)) for r in rows]
    if any(v is None for v in values):
        return None
    widths = [(b[1] - b[0]) / 2 for r in rows if (b := (r.get("intervals") or {}).get(key))]
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values), "min": min(values),
            "max": max(values), "ci_half_width": statistics.fmean(widths) if len(widths) == len(rows) else None}


def seed_groups(results: Results | Sequence[Results]) -> list[dict]:
    """One entry per (run, method) finished under at least two seeds; ``failed``: its seeds whose
    unlearning failed (left out of the statistics, named in the table)."""
    out = []
    for res in as_list(results):
        by_method: dict[str, list[dict]] = {}
        failed: dict[str, list[int]] = {}
        for row in res.get("rows", []):
            if row.get("method") and row.get("seed") is not None and is_final(row):
                if row.get("status") == "ok":
                    by_method.setdefault(row["method"], []).append(row)
                else:
                    failed.setdefault(row["method"], []).append(row["seed"])
        for method, rows in by_method.items():
            if len({r["seed"] for r in rows}) >= 2:
                out.append({"run": res.get("run_name", ""), "method": method, "seeds": sorted(r["seed"] for r in rows),
                            "failed": sorted(failed.get(method, [])),
                            "stats": {k: _stats(rows, k) for _, k in SEED_AGGREGATES}})
    return out


def _cell(s: dict | None) -> str:
    if s is None:
        return "—"
    ci = f" (CI ±{s['ci_half_width']:.3f})" if s["ci_half_width"] is not None else ""
    return f"{s['mean']:.3f} ± {s['sd']:.3f}{ci}"


def _seeds_cell(group: dict) -> str:
    failed = group.get("failed") or []
    return ",".join(map(str, group["seeds"])) + (f" ({','.join(map(str, failed))} failed)" if failed else "")


def _table(groups: list[dict]) -> tuple[list[str], list[list[str]]]:
    several = len({g["run"] for g in groups}) > 1
    header = ["method", "seeds", *(c for c, _ in SEED_AGGREGATES)]
    body = [[(f"{g['run']}:" if several else "") + g["method"], _seeds_cell(g),
             *(_cell(g["stats"][k]) for _, k in SEED_AGGREGATES)] for g in groups]
    return header, body


LEGEND = ("mean ± standard deviation across seeds; in brackets the mean half-width of the per-seed 95% "
          "bootstrap intervals (question sampling)")


def seeds_markdown(results: Results | Sequence[Results]) -> str:
    groups = seed_groups(results)
    if not groups:
        return ""
    header, body = _table(groups)
    lines = ["## Across seeds", "", f"Each cell: {LEGEND}.", "", "| " + " | ".join(header) + " |",
             "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def seeds_html(results: Results | Sequence[Results]) -> str:
    groups = seed_groups(results)
    if not groups:
        return ""
    header, body = _table(groups)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return (f'<h2>Across seeds</h2><p class="legend">{escape(LEGEND)}.</p>'
            f'<table class="seeds"><tr>{head}</tr>{rows}</table>')
