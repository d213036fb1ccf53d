"""Paired differences between two evaluated models on the same questions (docs/method.md, section 7).

    unlearnlm compare runs/grid-lr1e-4:ME+GD runs/grid-lr1e-4:GA+GD

Each side is ``RUN_DIR:LABEL`` (a row of that run's results.json). Both models' per-example
records are matched by question within each set; a paired bootstrap (the same questions drawn
for both in every resample) gives the 95% interval of each aggregate's difference A - B.
"""
from __future__ import annotations

from pathlib import Path

from unlearnlm.errors import DataError
from unlearnlm.evaluation.intervals import RESAMPLES, paired_differences
from unlearnlm.evaluation.store import SUMMARY, read_records
from unlearnlm.io import read_json
from unlearnlm.reports.runs import AGGREGATES, fmt, load_results


def model_records(spec: str) -> tuple[str, dict[str, list[dict]], str]:
    """(label, {set: records}, data family) of ``RUN_DIR:LABEL``."""
    run_dir, sep, label = spec.rpartition(":")
    if not sep or not run_dir or not label:
        raise DataError(f"compare: {spec!r} is not RUN_DIR:LABEL (e.g. runs/demo:ME+GD)")
    rows = {r["label"]: r for r in load_results(run_dir)["rows"]}
    if label not in rows:
        raise DataError(f"compare: {run_dir} has no row {label!r}; its rows: {', '.join(rows)}")
    row = rows[label]
    if row.get("status") != "ok":
        raise DataError(f"compare: {spec} did not finish ({row.get('error', row.get('status'))})")
    eval_dir = Path(run_dir) / row["eval_dir"]
    summary = read_json(eval_dir / SUMMARY) if (eval_dir / SUMMARY).is_file() else {}
    family = summary.get("family") or summary.get("scenario") or ("real_world" if "neighbor" in row["sets"] else "tofu")
    records = {s: read_records(eval_dir / f"{s}.jsonl") for s in row["sets"] if (eval_dir / f"{s}.jsonl").is_file()}
    return label, records, family


def compare_lines(spec_a: str, spec_b: str, resamples: int = RESAMPLES) -> list[str]:
    """The comparison as printable lines: per aggregate, A - B and its 95% paired interval."""
    label_a, a, family = model_records(spec_a)
    label_b, b, family_b = model_records(spec_b)
    if family != family_b:
        raise DataError(f"compare: {spec_a} is {family} and {spec_b} is {family_b}: no shared questions")
    diffs = paired_differences(a, b, family, resamples=resamples)
    names = dict((key, column) for column, key in AGGREGATES)
    lines = [f"A = {spec_a}, B = {spec_b}; paired bootstrap over shared questions, {resamples} resamples, 95%:"]
    for key, value in diffs.items():
        if value is None:
            continue
        diff, lo, hi = value
        verdict = "A higher" if lo > 0 else "B higher" if hi < 0 else "no clear difference"
        lines.append(f"  {names.get(key, key):10s} A - B = {fmt(diff)} [{fmt(lo)}, {fmt(hi)}]  {verdict}")
    return lines
