"""One self-contained HTML report: inline CSS, figures as base64 PNG data URIs, no scripts.

    from unlearnlm.reports.html import write_html
    write_html([results], [Path("runs/demo")], Path("runs/demo/report.html"))

Sections: run information (with the judges that scored CS and ES), the aggregate table,
the per-set table, the across-seed table (several seeds), the robustness tables (attacked runs), the figures and sample answers (question, reference, the target's and
each method's answer side by side, read from ``eval/<label>/<set>.jsonl``). All text
from the run is HTML-escaped.
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any, Mapping, Sequence

from unlearnlm.io import write_text
from unlearnlm.reports import figures as figs
from unlearnlm.reports.robustness import robustness_html
from unlearnlm.reports.seeds import seeds_html
from unlearnlm.reports.runs import (
    METRIC_LONG,
    METRIC_SHORT,
    Results,
    aggregate_columns,
    fmt,
    is_final,
    judge_line,
    number,
    read_examples,
    report_rows,
    set_columns,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = {  # name -> (plot function, caption)
    "mu_fe": (figs.plot_mu_fe, "Model Utility against Forget Efficacy; the star is the model before unlearning."),
    "privleak_fe": (figs.plot_privleak_fe, "privleak against Forget Efficacy: 0 is the retain model, "
                    "-100 the target's exposure, above 0 over-unlearning."),
    "heatmap": (figs.plot_heatmap, "Per-set metric means (forget set: lower = more forgotten)."),
    "dynamics": (figs.plot_dynamics, "MU and FE after each unlearning epoch."),
    "continual": (figs.plot_continual, "MU and FE after each task of the continual sequence."),
}

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:12.5px;margin:.6em 0}
th,td{border:1px solid #ddd;padding:2px 5px}.scroll{overflow-x:auto}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ci{color:#666;font-size:85%}
tr.target td{font-weight:bold;background:#fff8dc}tr.failed td{color:#a00;background:#fff0f0}
table.info th{text-align:left}.judge{background:#eef5ff;border-left:4px solid #4a7fd4;padding:.5em .8em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:13px;color:#555}
.qa{border:1px solid #ddd;border-radius:4px;padding:.6em .8em;margin:1em 0}
.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:.6em;margin-top:.5em}
.card{background:#fafafa;border:1px solid #e4e4e4;border-radius:4px;padding:.4em .6em;font-size:13px}
.card h4{margin:0 0 .3em;font-size:13px}.card.target{background:#fff8dc}.card.failed{color:#a00}
.score{color:#666;font-size:12px;margin-top:.3em}.legend{font-size:13px;color:#555}
"""


def _num_cells(values: Sequence[Any]) -> str:
    return "".join(f'<td class="num">{escape(fmt(v))}</td>' for v in values)


def _interval_cells(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    """Aggregate cells: the value, and below it its 95% bootstrap interval when there is one."""
    cells = []
    for key in keys:
        value, bounds = row["aggregates"].get(key), (row.get("intervals") or {}).get(key)
        ci = (f'<br><span class="ci">[{escape(fmt(bounds[0]))}, {escape(fmt(bounds[1]))}]</span>'
              if bounds and value is not None else "")
        cells.append(f'<td class="num">{escape(fmt(value))}{ci}</td>')
    return "".join(cells)


def _row_class(row: Mapping[str, Any]) -> str:
    return ' class="failed"' if row["failed"] else (' class="target"' if row["is_target"] else "")


def _failure(row: Mapping[str, Any]) -> str:
    return f"{row.get('status')}: {row.get('error') or 'no error recorded'}"


def _ids(row: Mapping[str, Any]) -> str:
    return "".join(f"<td>{escape('' if row.get(k) is None else str(row[k]))}</td>"
                   for k in ("method", "epoch", "task"))


def aggregate_table(rows: list[dict[str, Any]]) -> str:
    keys = [(c, k) for c, k in aggregate_columns(rows)
            if c in ("MU", "FE") or any(number(r["aggregates"].get(k)) is not None for r in rows)]
    head = "".join(f"<th>{escape(c)}</th>" for c, _ in keys)
    body = []
    for r in rows:
        cells = (f'<td colspan="{len(keys)}">{escape(_failure(r))}</td>' if r["failed"]
                 else _interval_cells(r, [k for _, k in keys]))
        body.append(f"<tr{_row_class(r)}><td>{escape(r['display'])}</td>{_ids(r)}{cells}</tr>")
    return (f'<table class="aggregates"><tr><th>label</th><th>method</th><th>epoch</th><th>task</th>'
            f"{head}</tr>{''.join(body)}</table>")


def set_table(rows: list[dict[str, Any]]) -> str:
    columns = set_columns(rows)
    width = sum(len(m) for _, m in columns)
    top = "".join(f'<th colspan="{len(m)}">{escape(s)}</th>' for s, m in columns)
    sub = "".join(f'<th title="{escape(METRIC_LONG.get(m, m))}">{escape(METRIC_SHORT.get(m, m))}</th>'
                  for _, metrics in columns for m in metrics)
    body = []
    for r in rows:
        cells = (f'<td colspan="{width}">{escape(_failure(r))}</td>' if r["failed"]
                 else _num_cells([r["sets"].get(s, {}).get(m) for s, ms in columns for m in ms]))
        body.append(f"<tr{_row_class(r)}><td>{escape(r['display'])}</td>{cells}</tr>")
    return (f'<div class="scroll"><table class="sets"><tr><th rowspan="2">label</th>{top}</tr>'
            f"<tr>{sub}</tr>{''.join(body)}</table></div>")


def _info(results: Results, run_dir: Path) -> str:
    judges = results.get("judges") or {}
    acc = number(judges.get("nli_heldout_accuracy"))
    items = [
        ("run", results.get("run_name")), ("directory", str(run_dir)),
        ("scenario", results.get("scenario")), ("model", results.get("model")),
        ("forget set", results.get("forget")),
        ("embedder (CS)", judges.get("embedder")), ("NLI judge (ES)", judges.get("nli")),
        ("NLI held-out accuracy", None if acc is None else f"{acc:.3f}"),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape('not recorded' if v is None else str(v))}</td></tr>"
                   for k, v in items)
    return (f'<table class="info">{rows}</table>'
            f'<p class="judge">{escape(judge_line(results))}</p>')


def _figure_html(name: str, data: bytes, caption: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    # Shown at 100 px per inch (the PNG has 150) so text in figures matches the page's text.
    width = int.from_bytes(data[16:20], "big") * 100 // figs.DPI if data[:8] == PNG_MAGIC else 0
    size = f' width="{width}"' if width else ""
    return (f'<figure id="fig-{escape(name)}"><img alt="{escape(caption)}"{size} src="{uri}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _sample_sets(rows: list[dict[str, Any]]) -> list[str]:
    names = [s for s, _ in set_columns(rows)]
    other = next((s for s in ("retain", "neighbor") if s in names), None)
    return [s for s in ("forget", other) if s and s in names] or ["forget"]


def _card(row: Mapping[str, Any], record: Mapping[str, Any] | None, note: str | None) -> str:
    kind = "target" if row["is_target"] else ("failed" if row["failed"] else "")
    if record is None:
        body, score = f"<em>{escape(note or 'no record for this question')}</em>", ""
    else:
        body = escape(str(record.get("generation", "")))
        score = " · ".join(f"{METRIC_SHORT[m]}\u00a0{escape(fmt(record.get(m)))}"
                           for m in METRIC_SHORT if m in record)
    return (f'<div class="card {kind}"><h4>{escape(row["display"])}</h4><div>{body}</div>'
            f'<div class="score">{score}</div></div>')


def sample_answers(results: Results, run_dir: Path, n: int = 3) -> str:
    """Side-by-side answers of the target and every method on the first ``n`` questions of
    the forget set and of the retain (or neighbor) set."""
    rows = [r for r in report_rows(results) if is_final(r)]
    parts = []
    for set_name in _sample_sets(rows):
        records: dict[str, dict[str, dict[str, Any]] | None] = {}
        for r in rows:
            found = None if r["failed"] else read_examples(run_dir, r, set_name)
            records[r["label"]] = None if found is None else {str(x.get("question")): x for x in found}
        source = next((records[r["label"]] for r in sorted(rows, key=lambda r: not r["is_target"])
                       if records[r["label"]]), None)
        parts.append(f"<h3>{escape(set_name)} set</h3>")
        if not source:
            parts.append(f"<p>No per-example records found for this set under {escape(str(run_dir))}/eval.</p>")
            continue
        for question, example in list(source.items())[:n]:
            cards = []
            for r in rows:
                by_q = records[r["label"]]
                note = _failure(r) if r["failed"] else ("no eval file" if by_q is None else None)
                cards.append(_card(r, None if by_q is None else by_q.get(question), note))
            parts.append(
                f'<div class="qa"><div><b>Q:</b> {escape(question)}</div>'
                f'<div><b>Reference:</b> {escape(str(example.get("reference", "")))}</div>'
                f'<div class="answers">{"".join(cards)}</div></div>'
            )
    return "".join(parts)


def render_html(results_list: Sequence[Results], run_dirs: Sequence[Path],
                figures: Mapping[str, bytes], n_samples: int = 3) -> str:
    rows = report_rows(results_list)
    names = ", ".join(str(r.get("run_name", "")) for r in results_list)
    legend = "; ".join(f"{s} = {METRIC_LONG[m]}" for m, s in METRIC_SHORT.items())
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Unlearning report: {escape(names)}</title><style>{CSS}</style></head><body>",
        f"<h1>Unlearning report: {escape(names)}</h1><h2>Runs</h2>",
    ]
    out += [_info(res, Path(d)) for res, d in zip(results_list, run_dirs)]
    out += [
        "<h2>Aggregate scores</h2>",
        '<p class="legend">MU = Model Utility (higher is better), FE = Forget Efficacy (higher is '
        "better), MU_retain = MU on the retain set alone, FQ = Forget Quality (KS-test p-value), "
        "TOFU_MU = TOFU's model utility; privleak = Min-K% membership leakage against the retain model "
        "(0 = like the retain model, -100 = like the target); AUC_* = ROC AUC of a membership-inference "
        "attack, forget set against holdout set (0.5 = indistinguishable, 1 = still looks trained-on).</p>",
        aggregate_table(rows),
        "<h2>Per-set metrics</h2>",
        f'<p class="legend">{escape(legend)}. Forget set: lower = more forgotten.</p>',
        set_table(rows),
        seeds_html(results_list),
        robustness_html(results_list),
        "<h2>Figures</h2>",
    ]
    out += [_figure_html(name, data, FIGURES[name][1] if name in FIGURES else name)
            for name, data in figures.items()]
    for res, d in zip(results_list, run_dirs):
        out.append(f"<h2>Sample answers: {escape(str(res.get('run_name', '')))}</h2>")
        out.append(sample_answers(res, Path(d), n_samples))
    out.append("</body></html>\n")
    return "\n".join(out)


def write_html(results_list: Sequence[Results], run_dirs: Sequence[Path], path: str | Path, *,
               figures: Mapping[str, str | Path] | None = None, n_samples: int = 3) -> Path:
    """Write the report page atomically. ``figures`` maps a figure name to a PNG file to embed;
    when None, the figures are drawn in memory (those without data are left out)."""
    if len(results_list) != len(run_dirs):
        raise ValueError(f"{len(results_list)} results but {len(run_dirs)} run directories")
    if figures is None:
        drawn = {name: plot(list(results_list), None) for name, (plot, _) in FIGURES.items()}
        data = {name: figs.png_bytes(fig) for name, fig in drawn.items() if fig is not None}
    else:
        data = {name: Path(p).read_bytes() for name, p in figures.items()}
    write_text(path, render_html(results_list, run_dirs, data, n_samples))
    return Path(path)
