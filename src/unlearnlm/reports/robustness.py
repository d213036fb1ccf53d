"""The robustness tables: Forget Efficacy under each attack and the recovery (docs/method.md, section 9).

    text = robustness_markdown(results_list)     # "" when no run has attack results
    html = robustness_html(results_list)
    write_robustness_csv(results_list, path)

One row per attacked model, one column per attack. The FE table shows the model's FE on the
questions each attack scores (the evaluated forget set; the untrained forget half for the
relearning attacks) and its FE after each attack; the recovery table shows how much of the
forgetting each attack undid. Every value carries its 95% bootstrap interval where there is one.
"""
from __future__ import annotations

import csv
from html import escape
from pathlib import Path
from typing import Any, Sequence

from unlearnlm.io import atomic_path
from unlearnlm.reports.runs import Results, as_list, fmt

PLAIN = {"forget": "FE", "second_half": "FE (half)"}  # the unattacked column of each scored set
PLAIN_BASELINE = ("relearn", "relearn_retain")  # attacks whose baseline is the target as it is


def _entries(results: Results | Sequence[Results]) -> list[dict[str, Any]]:
    runs = as_list(results)
    out = []
    for res in runs:
        for e in res.get("robustness") or []:
            label = e["label"] if len(runs) == 1 else f"{res.get('run_name', '')}/{e['label']}"
            out.append({**e, "display": label})
    return out


def _grid(entries: list[dict]) -> tuple[list[str], list[str], dict]:
    """(model labels, columns, {(label, column): (value, interval)}) for the FE table."""
    labels = list(dict.fromkeys(e["display"] for e in entries))
    columns, cells = [], {}
    for scored, plain in PLAIN.items():
        attacks = list(dict.fromkeys(e["attack"] for e in entries if e["scored"] == scored))
        if attacks:
            columns += [plain, *attacks]
        for e in (e for e in entries if e["scored"] == scored):
            cells[(e["display"], plain)] = (e["fe_before"], None)
            cells[(e["display"], e["attack"])] = (e["fe_after"], e["intervals"].get("fe_after"))
            if e["attack"] in PLAIN_BASELINE:  # the target, not attacked, is these attacks' baseline
                target = e["display"][: -len(e["label"])] + "target"
                cells.setdefault((target, plain), (e["fe_baseline"], None))
    targets = [d for d, _ in cells if d == "target" or d.endswith("/target")]
    return list(dict.fromkeys(targets + labels)), columns, cells


def _cell(value: float | None, bounds) -> str:
    if value is None:
        return "—"
    return fmt(value) + (f" [{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds else "")


def _tables(entries: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """[(title, header, body rows)] of the FE and recovery tables."""
    labels, columns, cells = _grid(entries)
    fe_rows = [[label] + [_cell(*cells.get((label, c), (None, None))) for c in columns] for label in labels]
    attacks = list(dict.fromkeys(e["attack"] for e in entries))
    rec = {(e["display"], e["attack"]): _cell(e["recovery"], e["intervals"].get("recovery"))
           for e in entries if e["label"] != "target"}
    attacked = dict.fromkeys(e["display"] for e in entries if e["label"] != "target")
    rec_rows = [[label] + [rec.get((label, a), "—") for a in attacks] for label in attacked]
    return [("Forget Efficacy under attack", ["model", *columns], fe_rows),
            ("Recovery: share of the forgetting each attack undid (0 = none, 1 = back to the target)",
             ["model", *attacks], rec_rows)]


def robustness_markdown(results: Results | Sequence[Results]) -> str:
    entries = _entries(results)
    if not entries:
        return ""
    parts = ["## Robustness to attacks", ""]
    for title, header, body in _tables(entries):
        parts += [f"{title}:", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        parts += ["| " + " | ".join(row) + " |" for row in body] + [""]
    return "\n".join(parts)


def robustness_html(results: Results | Sequence[Results]) -> str:
    entries = _entries(results)
    if not entries:
        return ""
    out = ["<h2>Robustness to attacks</h2>",
           '<p class="legend">FE = Forget Efficacy on the evaluated forget set, FE (half) on the forget half the '
           "relearning attacks never train on; each attack's column is the FE after it. Recovery = (FE before - FE "
           "after) / (FE before - the target's FE under the same attack). Brackets: 95% bootstrap intervals.</p>"]
    for title, header, body in _tables(entries):
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        rows = "".join("<tr>" + f"<td>{escape(r[0])}</td>" + "".join(f'<td class="num">{escape(c)}</td>' for c in r[1:])
                       + "</tr>" for r in body)
        out.append(f'<p>{escape(title)}</p><div class="scroll"><table class="robustness"><tr>{head}</tr>{rows}</table></div>')
    return "\n".join(out)


CSV_FIELDS = ("model", "attack", "scored", "n", "fe_before", "fe_after", "fe_after_lo", "fe_after_hi", "fe_baseline",
              "change", "change_lo", "change_hi", "forgotten", "forgotten_lo", "forgotten_hi",
              "recovery", "recovery_lo", "recovery_hi")


def write_robustness_csv(results: Results | Sequence[Results], path: str | Path) -> Path | None:
    """One line per (model, attack); None (nothing written) when no run has attack results."""
    entries = _entries(results)
    if not entries:
        return None
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for e in entries:
            ci = e["intervals"]
            w.writerow([e["display"], e["attack"], e["scored"], e["n"], e["fe_before"], e["fe_after"],
                        *(ci.get("fe_after") or ("", "")), e["fe_baseline"], e["change"],
                        *(ci.get("change") or ("", "")), e.get("forgotten", e["fe_before"] - e["fe_baseline"]),
                        *(ci.get("forgotten") or ("", "")), "" if e["recovery"] is None else e["recovery"],
                        *(ci.get("recovery") or ("", ""))])
    return Path(path)
