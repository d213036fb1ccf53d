"""Evaluate one model on a scenario's evaluation sets (docs/method.md, section 7).

    judges = load_judges(cfg, exclude_questions_for(cfg))        # judges/factory.py, once per process
    sets = tofu.eval_sets(data_dir, cfg.data.split, cfg.data.tasks, cfg.eval.ds_size)
    summary = evaluate_model(model_dir, cfg, sets, "tofu", out_dir, judges)
    fq = forget_quality_for(out_dir, retain_model_eval_dir)

Per set, the metrics of ``eval.metrics`` that apply to it (``registry.metrics_for``) decide
which stages run, each once over the whole set (``stages.py``); the records are built from
the registry. What ``out_dir`` holds and what is resumed: ``store.py``.
"""
from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Callable

from unlearnlm.config.schema import RunConfig
from unlearnlm.data.prompts import PromptFormat
from unlearnlm.evaluation.aggregates import aggregate, forget_quality, mia_aucs, retain_relative, set_means
from unlearnlm.evaluation.intervals import intervals, retain_relative_intervals
from unlearnlm.evaluation.judges.factory import Judges
from unlearnlm.evaluation.metrics import truth_ratio_raw
from unlearnlm.evaluation.registry import ADDABLE_STAGES, Metric, metrics_for
from unlearnlm.evaluation.sets import entailment_direction, eval_set
from unlearnlm.evaluation.stages import SetInputs, run_stages, stage_fields
from unlearnlm.evaluation.store import (
    LM_EVAL,
    SUMMARY,
    questions_key,
    read_records,
    stored_lm_eval,
    stored_set,
    write_jsonl,
)
from unlearnlm.io import read_json, write_json
from unlearnlm.utils import log


def score_set(x: SetInputs, metrics: list[Metric], stored: list[dict] | None = None) -> tuple[list[dict], dict]:
    """Per-example records of one set with the scores of ``metrics`` (added to ``stored``
    records when given), and the seconds of each stage run."""
    examples, seconds = run_stages(set().union(*(m.needs for m in metrics)), x)
    records = stored or [{"question": r["question"], "reference": r[x.spec.truth_key]} for r in x.rows]
    for rec, ex in zip(records, examples):
        rec.update({m.name: m.score(ex) for m in metrics})
        for stage in seconds:
            rec.update(stage_fields(stage, x, ex))
    return records, seconds


def _plan(name: str, rows: list[dict], family: str, cfg: RunConfig, out_dir: Path, judges_id: dict,
          force: bool, holdout: bool) -> tuple[dict | None, list[Metric]]:
    """(the stored set summary to keep or extend, the metrics still to compute) for one set.
    Membership-inference scores are computed only beside a holdout set (their AUC needs both)."""
    wanted = [m for m in metrics_for(eval_set(name, family).kind, family, cfg.eval.metrics)
              if holdout or "MIA" not in m.enters]
    from unlearnlm.models.loading import eval_precision  # torch: imported when needed

    precision = eval_precision(cfg.eval.bf16)
    stored = None if force else stored_set(out_dir / f"{name}.summary.json", rows, judges_id, precision)
    if stored is None or not (out_dir / f"{name}.jsonl").is_file():
        return None, wanted
    missing = [m for m in wanted if m.name not in stored["metrics"]]
    if any(not m.needs <= ADDABLE_STAGES for m in missing):
        return None, wanted  # a missing metric needs generations again: recompute the set
    return stored, missing


def is_evaluated(cfg: RunConfig, sets: dict[str, list[dict]], family: str, out_dir: str | Path,
                 judges: Judges) -> bool:
    """True when ``out_dir`` already holds every set of ``sets`` with every wanted metric (and
    every lm-eval task), so ``evaluate_model`` would not need the model at all."""
    out_dir, judges_id = Path(out_dir), judges.describe()
    for name, rows in sets.items():
        stored, todo = _plan(name, rows, family, cfg, out_dir, judges_id, False, "holdout" in sets)
        if stored is None or todo:
            return False
    general = stored_lm_eval(out_dir / LM_EVAL, cfg.eval.lm_eval_limit)
    return all(t in general for t in cfg.eval.lm_eval_tasks)


def _score_and_store(name: str, x: SetInputs, metrics: list[Metric], stored: dict | None, out_dir: Path,
                     judges_id: dict, precision: str) -> dict:
    start = time.time()
    old = read_records(out_dir / f"{name}.jsonl") if stored else None
    records, stages = score_set(x, metrics, old)
    seconds = time.time() - start + (stored or {}).get("seconds", 0.0)
    summary = {
        "means": set_means(records),
        "n": len(records),
        "metrics": [*(stored or {}).get("metrics", []), *(m.name for m in metrics)],
        "seconds": round(seconds, 3),
        "examples_per_s": len(records) / max(seconds, 1e-9),
        "stage_seconds": {**(stored or {}).get("stage_seconds", {}), **stages},
        "questions_sha256": questions_key(x.rows),
        "judges": judges_id,
        "precision": precision,
    }
    write_jsonl(out_dir / f"{name}.jsonl", records)
    write_json(out_dir / f"{name}.summary.json", summary)  # last: marks the set done
    log(f"eval {name}: {len(records)} examples, {len(metrics)} metrics in {time.time() - start:.1f}s")
    return summary


def _load(model_path, cfg: RunConfig, prompt_edit=None):
    import torch

    from unlearnlm.models.loading import eval_precision, load_model, load_tokenizer, resolve_model

    t = time.time()
    path = resolve_model(str(model_path), cfg.model.cache_dir)
    tokenizer = load_tokenizer(path, cfg.model.trust_remote_code)
    fmt = PromptFormat.for_tokenizer(tokenizer, cfg.model)
    if prompt_edit is not None:
        fmt = prompt_edit(fmt)
    model = load_model(path, cfg.model.trust_remote_code).eval()
    if torch.cuda.is_available():
        model.to("cuda")
    precision = eval_precision(cfg.eval.bf16)
    if precision == "bf16 weights":  # no fp32 copy, no autocast casts
        model.to(torch.bfloat16)
    log(f"eval: loaded {model_path} in {time.time() - t:.1f}s (prompt format {fmt.kind}, {precision})")
    return model, tokenizer, fmt, precision


def _free(model) -> None:
    import torch

    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def evaluate_model(model_path: str | Path, cfg: RunConfig, sets: dict[str, list[dict]], family: str,
                   out_dir: str | Path, judges: Judges, force: bool = False, progress: bool = True,
                   prompt_edit: Callable[[PromptFormat], PromptFormat] | None = None) -> dict:
    """Score the model at ``model_path`` on ``sets`` ({set name: rows}) of data ``family``
    ("tofu" or "real_world"); write per-set files and ``summary.json`` in ``out_dir``;
    return the summary. ``prompt_edit`` changes the prompt format (the prompt attacks); the
    caller keeps such results in their own ``out_dir``."""
    wall, out_dir, judges_id = time.time(), Path(out_dir), judges.describe()
    out_dir.mkdir(parents=True, exist_ok=True)
    plans = {name: _plan(name, rows, family, cfg, out_dir, judges_id, force, "holdout" in sets)
             for name, rows in sets.items()}
    done = {name: stored for name, (stored, todo) in plans.items() if stored is not None and not todo}
    for name in done:
        log(f"eval {name}: loaded from {out_dir / f'{name}.summary.json'}")
    general = {} if force else stored_lm_eval(out_dir / LM_EVAL, cfg.eval.lm_eval_limit)
    missing_tasks = [t for t in cfg.eval.lm_eval_tasks if t not in general]
    computed = len(done) < len(sets) or bool(missing_tasks)
    if computed:
        model, tokenizer, fmt, precision = _load(model_path, cfg, prompt_edit)
        try:
            for name, rows in sets.items():
                if name not in done:
                    x = SetInputs(model, tokenizer, fmt, rows, eval_set(name, family),
                                  entailment_direction(name, family), judges, cfg.eval.max_new_tokens,
                                  cfg.eval.batch_size, precision == "bf16 autocast", name, progress)
                    done[name] = _score_and_store(name, x, plans[name][1], plans[name][0], out_dir, judges_id,
                                                  precision)
            if missing_tasks:
                general.update(_lm_eval(model, tokenizer, missing_tasks, cfg, out_dir, general))
        finally:
            _free(model)
    return _write_summary(model_path, cfg, sets, family, out_dir, judges_id, done, general, wall, computed)


def _lm_eval(model, tokenizer, tasks: list[str], cfg: RunConfig, out_dir: Path, general: dict) -> dict:
    from unlearnlm.evaluation.harness import run_lm_eval

    results = run_lm_eval(model, tokenizer, tasks, cfg.eval.lm_eval_limit, cfg.eval.batch_size)
    write_json(out_dir / LM_EVAL, {**general, **results})
    for task, r in results.items():
        log(f"eval lm-eval {task}: {r['metric']} {r['value']:.3f} +- {r['stderr'] or 0:.3f} on {r['n']}")
    return results


def _write_summary(model_path, cfg: RunConfig, sets: dict, family: str, out_dir: Path, judges_id: dict,
                   done: dict, general: dict, wall: float, computed: bool) -> dict:
    """Write and return summary.json. When nothing was computed its stored wall time stays, so
    that a resumed run leaves its finished summaries byte-identical."""
    means = {name: done[name]["means"] for name in sets}
    records = {name: read_records(out_dir / f"{name}.jsonl") for name in sets}  # once, for AUCs and intervals
    aggregates = aggregate(means, family)
    if "forget" in sets and "holdout" in sets:
        aggregates.update(mia_aucs(records["forget"], records["holdout"]))
    summary = {
        "model": str(model_path),
        "family": family,
        "sets": means,
        "n": {name: done[name]["n"] for name in sets},
        "aggregates": aggregates,
        "judges": judges_id,
        "seconds": round(sum(done[name]["seconds"] for name in sets)
                         + sum(general[t]["seconds"] for t in cfg.eval.lm_eval_tasks), 3),
        "wall_seconds": (None if computed else _stored_wall_seconds(out_dir)) or round(time.time() - wall, 3),
    }
    if cfg.eval.lm_eval_tasks:
        summary["lm_eval"] = {t: general[t] for t in cfg.eval.lm_eval_tasks}
    if cfg.eval.bootstrap_resamples:
        summary["intervals"] = intervals(records, family, cfg.eval.bootstrap_resamples)
    write_json(out_dir / SUMMARY, summary)
    return summary


def _stored_wall_seconds(out_dir: Path) -> float | None:
    path = out_dir / SUMMARY
    return read_json(path).get("wall_seconds") if path.is_file() else None


def _privacy_records(eval_dir: str | Path) -> dict[str, list[dict]]:
    return {s: read_records(p) for s in ("forget", "holdout") if (p := Path(eval_dir) / f"{s}.jsonl").is_file()}


def retain_relative_for(eval_dir: str | Path, retain_model_dir: str | Path) -> dict[str, float | None]:
    """privleak and the Reference attack's AUC of the model evaluated in ``eval_dir`` against the
    retain model evaluated in ``retain_model_dir`` ({} without both models' forget and holdout)."""
    return retain_relative(_privacy_records(eval_dir), _privacy_records(retain_model_dir))


def compare_with_retain(eval_dir: str | Path, retain_model_dir: str | Path, resamples: int = 0) -> tuple[dict, dict]:
    """(Forget Quality, privleak and the Reference attack's AUC; the 95% intervals of the last two,
    ``intervals.py``) of the model in ``eval_dir`` against the retain model in
    ``retain_model_dir``, each folder's records read once."""
    mine, theirs = _privacy_records(eval_dir), _privacy_records(retain_model_dir)
    aggregates = {"forget_quality": _forget_quality(mine.get("forget"), theirs.get("forget")),
                  "privleak": None, "auc_mia_reference": None, **retain_relative(mine, theirs)}
    return aggregates, retain_relative_intervals(mine, theirs, resamples) if resamples else {}


def _truth_ratios(records: list[dict]) -> list[float]:
    # An infinite R is stored as null: rebuild it from the NLL fields.
    return [r["truth_ratio_raw"] if r.get("truth_ratio_raw") is not None
            else truth_ratio_raw(r["nll_base"], r["nll_perturbed"]) for r in records]


def _forget_quality(unlearned: list[dict] | None, retain_model: list[dict] | None) -> float | None:
    if not unlearned or not retain_model:
        return None
    return forget_quality(_truth_ratios(unlearned), _truth_ratios(retain_model))


def forget_quality_for(summary_dir: str | Path, retain_model_dir: str | Path) -> float | None:
    """KS p-value between the forget-set raw truth ratios in two evaluation folders (the
    unlearned model's and the retain model's); None when either lacks ``forget.jsonl``."""
    paths = [Path(d) / "forget.jsonl" for d in (summary_dir, retain_model_dir)]
    if not all(p.is_file() for p in paths):
        return None
    return _forget_quality(*(read_records(p) for p in paths))
