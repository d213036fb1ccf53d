"""Load finished run directories and flatten their rows for the report writers.

    from unlearnlm.reports.runs import load_results, report_rows
    results = load_results(Path("runs/demo"))        # results.json, validated
    for row in report_rows([results]):                # one run: labels unchanged
        print(row["label"], row["aggregates"].get("model_utility"))

A run directory holds ``results.json`` and ``eval/<label>/<set>.jsonl`` (one record per
evaluated question). Every report module takes one results dict or a list of them; with
several runs, each label is prefixed with its run name so rows stay distinguishable.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from unlearnlm.errors import DataError
from unlearnlm.evaluation.harness import AGGREGATE_PREFIX, STDERR_SUFFIX, lm_eval_results
from unlearnlm.evaluation.registry import METRICS

# Per-set table headers and names, in registry order (``evaluation/registry.py``); a metric
# registered without a short header (the membership-inference scores, whose AUCs are
# aggregates) is not shown per set.
class _MetricNames(Mapping):
    """{metric: its short or long name}, read from the registry at each use, so a metric
    registered after this module was imported is named too."""

    def __init__(self, field: str):
        self.field = field

    def _table(self) -> dict[str, str]:
        return {e.name: getattr(e.obj, self.field) for e in METRICS if getattr(e.obj, self.field)}

    def __getitem__(self, key: str) -> str:
        return self._table()[key]

    def __iter__(self):
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


METRIC_SHORT = _MetricNames("short")
METRIC_LONG = _MetricNames("title")
# (column name, results.json aggregate key); the column names are those of the CSV.
AGGREGATES = (
    ("MU", "model_utility"),
    ("FE", "forget_efficacy"),
    ("MU_retain", "mu_retain"),
    ("FQ", "forget_quality"),
    ("TOFU_MU", "tofu_model_utility"),
    ("privleak", "privleak"),
    ("AUC_MinK", "auc_mia_min_k"),
    ("AUC_MinK++", "auc_mia_min_k_plus_plus"),
    ("AUC_LOSS", "auc_mia_loss"),
    ("AUC_ZLib", "auc_mia_zlib"),
    ("AUC_GradNorm", "auc_mia_gradnorm"),
    ("AUC_Ref", "auc_mia_reference"),
)

SET_ORDER = ("forget", "retain", "real_authors", "world_facts", "neighbor")
RESULTS_FILE = "results.json"

Results = Mapping[str, Any]


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/results.json`` checked for the fields the reports read.

    Raises DataError (an UnlearnError) with one line naming the path when the directory
    or file is missing, the JSON is malformed, or a row lacks its label."""
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not run_dir.is_dir():
        raise DataError(f"run directory not found: {run_dir}")
    if not path.is_file():
        raise DataError(
            f"no {RESULTS_FILE} in run directory {run_dir} (expected {path}); "
            "pass a finished run directory"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    problems = _problems(results)
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))
    results.setdefault("run_name", run_dir.name)
    return results


def _problems(results: Any) -> list[str]:
    if not isinstance(results, dict):
        return [f"expected a JSON object, got {type(results).__name__}"]
    rows = results.get("rows")
    if not isinstance(rows, list):
        return ["field 'rows' must be a list of row objects"]
    problems = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"rows[{i}] must be an object")
            continue
        if not isinstance(row.get("label"), str) or not row["label"]:
            problems.append(f"rows[{i}] has no 'label'")
        for field in ("aggregates", "sets"):
            if row.get(field) is not None and not isinstance(row[field], dict):
                problems.append(f"rows[{i}].{field} must be an object")
    return problems


def as_list(results: Results | Sequence[Results]) -> list[Results]:
    """One results dict or a sequence of them -> a list of them."""
    if isinstance(results, Mapping):
        return [results]
    return list(results)


def aggregate_columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """AGGREGATES, then each lm-eval task of ``rows`` and its stderr ("mmlu_offline",
    "mmlu_offline_stderr"), in first-seen order."""
    tasks: list[str] = []
    for row in rows:
        tasks += [t for t in lm_eval_results(row.get("aggregates", {})) if t not in tasks]
    extra = [(c, AGGREGATE_PREFIX + t + s) for t in tasks for c, s in ((t, ""), (f"{t}_stderr", STDERR_SUFFIX))]
    return list(AGGREGATES) + extra


def report_rows(results: Results | Sequence[Results]) -> list[dict[str, Any]]:
    """Rows of all runs, each a shallow copy with ``run``, ``is_target``, ``failed`` and
    ``series`` (the method's name, run-prefixed when there are several runs) added."""
    runs = as_list(results)
    prefix = len(runs) > 1
    out = []
    for run_results in runs:
        run = str(run_results.get("run_name") or "")
        for row in run_results.get("rows", []):
            r = dict(row)
            r["run"] = run
            r["aggregates"] = dict(row.get("aggregates") or {})
            r["sets"] = {k: dict(v or {}) for k, v in (row.get("sets") or {}).items()}
            r["failed"] = row.get("status", "ok") != "ok"
            r["is_target"] = row.get("method") is None
            base = row.get("method") or row["label"]
            r["series"] = f"{run}:{base}" if prefix else base
            r["display"] = f"{run}:{row['label']}" if prefix else row["label"]
            out.append(r)
    return out


def is_final(row: Mapping[str, Any]) -> bool:
    """A method's end result: not an epoch (dynamics) or task (continual) snapshot."""
    return row.get("epoch") is None and row.get("task") is None


def _shown(metric: str) -> bool:
    """Whether a metric has a per-set column (unregistered names, e.g. from a newer version, do)."""
    return metric not in METRICS or bool(METRICS.get(metric).short)


def set_columns(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """[(set, [metric, ...]), ...] over every row, in the paper's order."""
    sets: dict[str, list[str]] = {}
    for row in rows:
        for name, metrics in (row.get("sets") or {}).items():
            known = sets.setdefault(name, [])
            known.extend(m for m in (metrics or {}) if m not in known and _shown(m))
    order = {name: i for i, name in enumerate(SET_ORDER)}
    metric_order = {name: i for i, name in enumerate(METRIC_SHORT)}
    sets = {name: metrics for name, metrics in sets.items() if metrics}  # a holdout set shows no column
    names = sorted(sets, key=lambda s: (order.get(s, len(order)), list(sets).index(s)))
    return [
        (s, sorted(sets[s], key=lambda m: (metric_order.get(m, len(metric_order)), sets[s].index(m))))
        for s in names
    ]


def number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinity and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fmt(value: Any, missing: str = "—") -> str:
    """3 decimals; p-values below 0.001 (Forget Quality) in scientific notation."""
    v = number(value)
    if v is None:
        return missing
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3f}"


def judge_line(results: Results) -> str:
    """Which models scored the cosine similarity and entailment metrics (every report says it)."""
    judges = results.get("judges") or {}
    nli = judges.get("nli") or "not recorded"
    acc = number(judges.get("nli_heldout_accuracy"))
    acc_text = f"held-out accuracy {acc:.3f}" if acc is not None else "held-out accuracy not recorded"
    embedder = judges.get("embedder") or "not recorded"
    return f"Entailment score (ES) judge: {nli} ({acc_text}); cosine similarity (CS) embedder: {embedder}"


def read_examples(run_dir: Path, row: Mapping[str, Any], set_name: str) -> list[dict[str, Any]] | None:
    """Per-example records of one row on one set, or None when the file does not exist."""
    eval_dir = row.get("eval_dir") or f"eval/{row['label']}"
    path = Path(run_dir) / eval_dir / f"{set_name}.jsonl"
    if not path.is_file():
        return None
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records
