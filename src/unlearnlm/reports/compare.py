"""Paired differences between two evaluated models on the same questions (docs/method.md, section 7).

    unlearnlm compare runs/grid-lr1e-4:ME+GD runs/grid-lr1e-4:GA+GD
    unlearnlm compare runs/evidence:ME+GD runs/evidence:GA+GD     # every seed of each method

Each side is ``RUN_DIR:LABEL``: a row of that run's results.json, or a method of a run with
``seeds=[...]`` (its rows ``METHOD/seedN``, pooled). Both sides' per-example records are
matched by question within each set; a paired bootstrap (the same questions drawn for every
model in every resample) gives the 95% interval of each aggregate's difference A - B, of the
seed-averaged aggregates when a side pools seeds.
"""
from __future__ import annotations

from pathlib import Path

from unlearnlm.errors import ConfigError, DataError
from unlearnlm.evaluation.intervals import RESAMPLES, paired_differences
from unlearnlm.evaluation.store import SUMMARY, read_records
from unlearnlm.io import read_json
from unlearnlm.reports.runs import AGGREGATES, is_final, load_results


def _side_rows(run_dir: str, label: str, spec: str) -> list[dict]:
    """The row ``label`` of the run, or every finished seed row of method ``label``."""
    rows = load_results(run_dir)["rows"]
    by_label = {r["label"]: r for r in rows}
    if label in by_label:
        chosen = [by_label[label]]
    else:
        chosen = [r for r in rows if r.get("method") == label and r.get("seed") is not None
                  and r["label"].startswith(f"{label}/seed") and is_final(r)]
        if not chosen:
            raise DataError(f"compare: {run_dir} has no row or seeded method {label!r}; its rows: {', '.join(by_label)}")
    for row in chosen:
        if row.get("status") != "ok":
            raise DataError(f"compare: {run_dir}:{row['label']} did not finish ({row.get('error', row.get('status'))})")
    return chosen


def _row_records(run_dir: str, row: dict) -> tuple[dict[str, list[dict]], str]:
    if not row.get("eval_dir") or not row.get("sets"):
        raise DataError(f"compare: {run_dir}/results.json: row {row['label']!r} has no eval_dir or sets")
    eval_dir = Path(run_dir) / row["eval_dir"]
    summary = read_json(eval_dir / SUMMARY) if (eval_dir / SUMMARY).is_file() else {}
    family = summary.get("family") or summary.get("scenario") or ("real_world" if "neighbor" in row["sets"] else "tofu")
    missing = [str(eval_dir / f"{s}.jsonl") for s in row["sets"] if not (eval_dir / f"{s}.jsonl").is_file()]
    if missing:
        raise DataError(f"compare: {missing[0]}: file not found (the per-question records of {row['label']})")
    return {s: read_records(eval_dir / f"{s}.jsonl") for s in row["sets"]}, family


def model_records(spec: str) -> tuple[list[str], list[dict[str, list[dict]]], str]:
    """(labels, [{set: records}] one per model, data family) of ``RUN_DIR:LABEL``."""
    run_dir, sep, label = spec.rpartition(":")
    if not sep or not run_dir or not label:
        raise DataError(f"compare: {spec!r} is not RUN_DIR:LABEL (e.g. runs/demo:ME+GD)")
    rows = _side_rows(run_dir, label, spec)
    loaded = [_row_records(run_dir, row) for row in rows]
    families = {family for _, family in loaded}
    if len(families) > 1:
        raise DataError(f"compare: {spec} mixes data families {sorted(families)}")
    return [r["label"] for r in rows], [records for records, _ in loaded], families.pop()


def compare(spec_a: str, spec_b: str, resamples: int = RESAMPLES) -> dict:
    """{"a": labels, "b": labels, "differences": {aggregate: (A - B, lo, hi) or None}}."""
    if resamples < 1:
        raise ConfigError(f"compare: --resamples must be >= 1, got {resamples}")
    labels_a, a, family = model_records(spec_a)
    labels_b, b, family_b = model_records(spec_b)
    if family != family_b:
        raise DataError(f"compare: {spec_a} is {family} and {spec_b} is {family_b}: no shared questions")
    return {"a": labels_a, "b": labels_b, "differences": paired_differences(a, b, family, resamples=resamples)}


def signed(value: float) -> str:
    """A difference: +0.190, -0.031 (float noise below 5e-4 prints as +0.000)."""
    return f"{value + 0.0:+.3f}" if abs(value) >= 5e-4 else "+0.000"


def verdict(lo: float, hi: float) -> str:
    return "A higher" if lo > 0 else "B higher" if hi < 0 else "no clear difference"


def compare_lines(spec_a: str, spec_b: str, resamples: int = RESAMPLES) -> list[str]:
    """The comparison as printable lines: per aggregate, A - B and its 95% paired interval."""
    result = compare(spec_a, spec_b, resamples)
    names = dict((key, column) for column, key in AGGREGATES)
    pooled = [f"{side} pools {len(labels)} models ({', '.join(labels)})"
              for side, labels in (("A", result["a"]), ("B", result["b"])) if len(labels) > 1]
    lines = [f"A = {spec_a}, B = {spec_b}; paired bootstrap over shared questions, {resamples} resamples, 95%"
             + (f"; {'; '.join(pooled)}: seed-averaged aggregates" if pooled else "") + ":"]
    for key, value in result["differences"].items():
        if value is None:
            continue
        diff, lo, hi = value
        lines.append(f"  {names.get(key, key):10s} A - B = {signed(diff)} [{signed(lo)}, {signed(hi)}]  {verdict(lo, hi)}")
    if len(lines) == 1:
        lines.append("  no aggregate has its sets in both models' shared questions")
    return lines


def seed_differences(spec_a: str, spec_b: str, key: str) -> list[float]:
    """A - B of aggregate ``key`` for each seed both sides ran (their rows' values, in seed order)."""
    (run_a, _, label_a), (run_b, _, label_b) = spec_a.rpartition(":"), spec_b.rpartition(":")
    by_seed = [{r.get("seed"): r["aggregates"].get(key) for r in _side_rows(run, label, spec)}
               for run, label, spec in ((run_a, label_a, spec_a), (run_b, label_b, spec_b))]
    seeds = sorted(s for s in by_seed[0] if s in by_seed[1] and s is not None)
    return [by_seed[0][s] - by_seed[1][s] for s in seeds if by_seed[0][s] is not None and by_seed[1][s] is not None]


COMPARED = (("FE", "forget_efficacy"), ("MU Retain", "mu_retain"), ("MU", "model_utility"))


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _claim_cell(value, per_seed: list[float]) -> str:
    if value is None:
        return "—"
    diff, lo, hi = value
    agree = sum(_sign(d) == _sign(diff) for d in per_seed)  # an exact 0 agrees only with 0
    seeds = f"; {agree}/{len(per_seed)} seeds" if len(per_seed) > 1 else ""
    return f"{signed(diff)} [{signed(lo)}, {signed(hi)}]{seeds}"


def _claim_table(pairs: list[tuple[str, str, str]], diffs: list[dict], keys: tuple[tuple[str, str], ...]) -> str:
    lines = ["| claim | A | B | " + " | ".join(f"{name}: A - B" for name, _ in keys) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in keys) + " |"]
    for (claim, spec_a, spec_b), pair_diffs in zip(pairs, diffs):
        cells = [_claim_cell(pair_diffs.get(key), seed_differences(spec_a, spec_b, key)) for _, key in keys]
        lines.append(f"| {claim} | {spec_a.rpartition(':')[2]} | {spec_b.rpartition(':')[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_tables(pairs: list[tuple[str, str, str]], key_groups: tuple[tuple[tuple[str, str], ...], ...],
                      resamples: int = RESAMPLES) -> list[str]:
    """One Markdown table per group of (name, aggregate key), one line per (claim, RUN:A, RUN:B):
    each cell A - B [95% interval], and with several seeds how many of the per-seed differences
    share the sign of the seed-averaged one. Each pair is bootstrapped once for all the groups."""
    diffs = [compare(spec_a, spec_b, resamples)["differences"] for _, spec_a, spec_b in pairs]
    return [_claim_table(pairs, diffs, keys) for keys in key_groups]


def comparison_markdown(pairs: list[tuple[str, str, str]], resamples: int = RESAMPLES,
                        keys: tuple[tuple[str, str], ...] = COMPARED) -> str:
    """comparison_tables with one group of aggregates (default: FE, MU Retain, MU)."""
    return comparison_tables(pairs, (keys,), resamples)[0]
