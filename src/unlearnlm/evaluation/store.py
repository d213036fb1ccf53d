"""The evaluation result store: per-set JSON Lines and summaries, and what may be resumed.

    <out_dir>/<set>.jsonl          one record per example (scores, generation, NLL fields)
    <out_dir>/<set>.summary.json   {"means", "n", "metrics", "seconds", "stage_seconds", ...}
    <out_dir>/lm_eval.json         {task: lm-eval's metric, value, stderr, n, limit}
    <out_dir>/summary.json         {"model", "family", "sets", "n", "aggregates", "judges", ...}

A set summary is written last, so its presence marks the set done. It is reused when it was
computed on the same questions by the same judges; the metrics it lacks are added to it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from unlearnlm.errors import DataError
from unlearnlm.io import _jsonable, atomic_path, read_json
from unlearnlm.utils import log

SUMMARY = "summary.json"
LM_EVAL = "lm_eval.json"
# Set summaries written before the metric registry hold the paper's six.
PAPER_SIX = ("rouge", "probability", "truth_ratio", "token_entropy", "cosine_similarity", "entailment")


def questions_key(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps([r["question"] for r in rows], ensure_ascii=False).encode()).hexdigest()[:16]


def write_jsonl(path: Path, records: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(_jsonable(rec), ensure_ascii=False) + "\n")


def read_records(path: str | Path) -> list[dict]:
    """The per-example records of a ``<set>.jsonl``; a damaged line is a DataError naming it."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as e:
                    raise DataError(f"{path}:{number}: not a JSON record ({e.msg})") from None
    return records


def stored_set(path: Path, rows: list[dict], judges: dict, precision: str | None = None) -> dict | None:
    """The set summary at ``path`` if it was computed on these same questions by these judges,
    at this ``precision`` (``models.loading.eval_precision``; a summary written before the
    precision was recorded is taken as computed at it)."""
    if not path.is_file():
        return None
    try:
        summary = read_json(path)
    except ValueError:  # cut short (e.g. a crash before the data reached the disk): not a result
        log(f"{path}: unreadable; recomputing")
        return None
    if not isinstance(summary, dict) or summary.get("n") != len(rows) \
            or summary.get("questions_sha256") != questions_key(rows):
        log(f"{path}: computed on other questions; recomputing")
        return None
    if summary.get("judges") != judges:
        log(f"{path}: computed with other judges ({summary.get('judges')}); recomputing")
        return None
    if precision is not None and summary.get("precision", precision) != precision:
        log(f"{path}: computed in {summary['precision']}, this evaluation runs in {precision}; recomputing")
        return None
    summary.setdefault("metrics", list(PAPER_SIX))
    return summary


def stored_lm_eval(path: Path, limit: int) -> dict:
    """The lm-eval results at ``path`` computed with this ``limit`` ({} when none)."""
    if not path.is_file():
        return {}
    try:
        stored = read_json(path)
    except ValueError:  # unreadable: recompute
        return {}
    return {t: r for t, r in stored.items() if isinstance(r, dict) and r.get("limit") == limit} \
        if isinstance(stored, dict) else {}
