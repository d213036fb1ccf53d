"""Evaluate one model on a scenario's evaluation sets (docs/method.md, section 7).

    judges = load_judges(cfg, exclude_questions_for(cfg))        # once per process
    sets = tofu.eval_sets(data_dir, cfg.data.split, cfg.data.tasks, cfg.eval.ds_size)
    summary = evaluate_model(model_dir, cfg, sets, "tofu", out_dir, judges)
    fq = forget_quality_for(out_dir, retain_model_eval_dir)

Per set, every stage runs once over the whole set and its result is shared by the metrics
that need it: greedy generations (ROUGE, token entropy, cosine, entailment), one
likelihood call over every (question, answer) the set scores (probability and truth
ratio), one embedding call, one NLI call. ``out_dir`` then holds

    <set>.jsonl          one record per example (scores, generation, NLL fields)
    <set>.summary.json   {"means", "n", "seconds", "examples_per_s", "stage_seconds", ...}
    lm_eval.json         {task: lm-eval's metric, value, stderr, n} for cfg.eval.lm_eval_tasks
    summary.json         {"model", "scenario", "sets", "n", "aggregates", "judges", ...}

A set whose summary exists (same questions) is loaded, not recomputed, unless ``force``.
"""
from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from unlearnlm.config.schema import RunConfig
from unlearnlm.data.prompts import PromptFormat
from unlearnlm.evaluation.aggregates import aggregate, forget_quality, set_means
from unlearnlm.evaluation.generation import decode, generate_greedy
from unlearnlm.evaluation.judges.nli import nli_reference
from unlearnlm.evaluation.likelihood import nll_means
from unlearnlm.evaluation.metrics import (
    EvalSet,
    cosine_score,
    entailment_direction,
    entailment_score,
    eval_set,
    normalized_probability,
    probability,
    rouge_l_recall,
    token_entropy,
    truth_ratio_raw,
    truth_ratio_score,
)
from unlearnlm.io import _jsonable, atomic_path, read_json, write_json
from unlearnlm.utils import log

SUMMARY = "summary.json"
LM_EVAL = "lm_eval.json"


# --------------------------------------------------------------------------- judges
@dataclass
class Judges:
    """The sentence embedder (``.encode(texts)``, ``.name``) and NLI judge
    (``.is_entailment(premises, hypotheses)``, ``.name``, ``.info``) shared by all models."""

    embedder: Any
    nli: Any

    def describe(self) -> dict:
        info = getattr(self.nli, "info", None) or {}
        return {
            "embedder": self.embedder.name,
            "nli": self.nli.name,
            "nli_heldout_accuracy": info.get("heldout_accuracy"),
        }


def load_judges(cfg: RunConfig, exclude_questions: Iterable[str], progress: bool = True) -> Judges:
    """Embedder ``cfg.eval.embedder`` and NLI judge ``cfg.eval.nli`` (the offline one is built
    once, without the authors of ``exclude_questions``, and cached under <cache>/judges)."""
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.evaluation.judges.embedder import SentenceEmbedder
    from unlearnlm.evaluation.judges.nli import load_nli_judge
    from unlearnlm.models.offline import cache_root

    start = time.time()
    embedder = SentenceEmbedder(cfg.eval.embedder)
    nli = load_nli_judge(
        cfg.eval.nli,
        resolve_data_dir(cfg.data.data_dir),
        exclude_questions,
        cache_root(cfg.model.cache_dir) / "judges",
        progress=progress,
    )
    log(f"judges ready in {time.time() - start:.1f}s: embedder {embedder.name}, NLI {nli.name}")
    return Judges(embedder, nli)


def exclude_questions_for(cfg: RunConfig) -> set[str]:
    """Every question of the scenario's TOFU evaluation sets (all rows, not only the first
    ds_size, so the offline judge's cache key does not depend on ds_size). Real-world
    evaluation holds no TOFU question: nothing to exclude."""
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir

    if cfg.data.split == tofu.REAL_WORLD:
        return set()
    sets = tofu.eval_sets(resolve_data_dir(cfg.data.data_dir), cfg.data.split, list(cfg.data.tasks), 10**9)
    return {row["question"] for rows in sets.values() for row in rows}


# --------------------------------------------------------------------------- one set
def _questions_key(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps([r["question"] for r in rows], ensure_ascii=False).encode()).hexdigest()[:16]


def _stage(name: str, set_name: str, n: int, start: float, seconds: dict) -> None:
    t = time.time() - start
    seconds[name] = round(t, 3)
    log(f"eval {set_name}: {name} {t:.1f}s ({n / max(t, 1e-9):.2f} examples/s)")


def score_set(model, tokenizer, fmt: PromptFormat, rows: list[dict], spec: EvalSet, direction: tuple[str, str],
              judges: Judges, cfg: RunConfig, bf16: bool, set_name: str = "set",
              progress: bool = True) -> tuple[list[dict], dict[str, float]]:
    """Per-example records of one evaluation set and the seconds of each stage."""
    n, ev, seconds = len(rows), cfg.eval, {}
    questions = [r["question"] for r in rows]
    truths = [r[spec.truth_key] for r in rows]
    cos_refs = [r[spec.cosine_key] for r in rows]

    t = time.time()
    gen_ids = generate_greedy(model, tokenizer, fmt, questions, ev.max_new_tokens, ev.batch_size, bf16, progress)
    generations = [decode(tokenizer, ids) for ids in gen_ids]
    _stage("generation", set_name, n, t, seconds)

    t = time.time()
    pairs, slots = [], []  # slots[i] = (answer index, base index, perturbed slice)
    for r, q, truth in zip(rows, questions, truths):
        first = len(pairs)
        perturbed = list(r["perturbed_answer"])
        pairs += [(q, truth), (q, r[spec.truth_ratio_base_key])] + [(q, p) for p in perturbed]
        slots.append((first, first + 1, slice(first + 2, first + 2 + len(perturbed))))
    nll = nll_means(model, tokenizer, fmt, pairs, ev.batch_size, bf16, progress)
    _stage("likelihood", set_name, n, t, seconds)

    t = time.time()
    emb = judges.embedder.encode(generations + cos_refs)
    _stage("embedding", set_name, n, t, seconds)

    t = time.time()
    nli_truths = [nli_reference(q, a) for q, a in zip(questions, truths)] if spec.nli_with_question else truths
    side = {"generation": generations, "reference": nli_truths}
    entailed = list(judges.nli.is_entailment(side[direction[0]], side[direction[1]]))
    _stage("nli", set_name, n, t, seconds)

    records = []
    for i, r in enumerate(rows):
        a, b, p = slots[i]
        nll_answer, nll_base, nll_perturbed = nll[a], nll[b], nll[p]
        rouge = rouge_l_recall(generations[i], truths[i])
        R = truth_ratio_raw(nll_base, nll_perturbed)
        rec = {
            "question": questions[i],
            "reference": truths[i],
            "generation": generations[i],
            "rouge": rouge,
            "probability": (
                normalized_probability(nll_answer, nll_perturbed)
                if spec.probability_form == "normalized"
                else probability(nll_answer)
            ),
            "truth_ratio": truth_ratio_score(R, spec.is_forget),
            "truth_ratio_raw": R,
            "token_entropy": token_entropy(gen_ids[i]),
            "cosine_similarity": cosine_score(emb[i], emb[n + i]),
            "entailment": entailment_score(bool(entailed[i]), rouge),
            "nli_entailment": bool(entailed[i]),
            "generated_tokens": len(gen_ids[i]),
            "nll_answer": nll_answer,
            "nll_base": nll_base,
            "nll_perturbed": nll_perturbed,
        }
        if spec.nli_with_question:
            rec["nli_reference"] = nli_truths[i]
        if spec.cosine_key != spec.truth_key:
            rec["cosine_reference"] = cos_refs[i]
        records.append(rec)
    return records, seconds


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(_jsonable(rec), ensure_ascii=False) + "\n")


def read_records(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _resumable(path: Path, rows: list[dict], judges: dict) -> dict | None:
    """The set summary at ``path`` if it was computed on these same questions by these judges."""
    if not path.is_file():
        return None
    try:
        summary = read_json(path)
    except ValueError:  # cut short (e.g. a crash before the data reached the disk): not a result
        log(f"{path}: unreadable; recomputing")
        return None
    if not isinstance(summary, dict) or summary.get("n") != len(rows) \
            or summary.get("questions_sha256") != _questions_key(rows):
        log(f"{path}: computed on other questions; recomputing")
        return None
    if summary.get("judges") != judges:
        log(f"{path}: computed with other judges ({summary.get('judges')}); recomputing")
        return None
    return summary


def _stored_lm_eval(path: Path, limit: int) -> dict:
    """The lm-eval results at ``path`` computed with this ``limit`` ({} when none)."""
    if not path.is_file():
        return {}
    try:
        stored = read_json(path)
    except ValueError:  # unreadable: recompute
        return {}
    return {t: r for t, r in stored.items() if isinstance(r, dict) and r.get("limit") == limit} \
        if isinstance(stored, dict) else {}


# --------------------------------------------------------------------------- one model
def evaluate_model(model_path: str | Path, cfg: RunConfig, sets: dict[str, list[dict]], scenario_family: str,
                   out_dir: str | Path, judges: Judges, force: bool = False, progress: bool = True) -> dict:
    """Score the model at ``model_path`` on ``sets`` ({set name: rows}) of ``scenario_family``
    ("tofu" or "real_world"); write per-set files and ``summary.json`` in ``out_dir``;
    return the summary."""
    import torch

    from unlearnlm.models.loading import load_model, load_tokenizer, resolve_model, use_bf16

    wall = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = {name: eval_set(name, scenario_family) for name in sets}  # validates names first
    judges_id = judges.describe()
    done = {} if force else {n: s for n in sets
                             if (s := _resumable(out_dir / f"{n}.summary.json", sets[n], judges_id))}
    for name in done:
        log(f"eval {name}: loaded from {out_dir / f'{name}.summary.json'}")
    general = {} if force else _stored_lm_eval(out_dir / LM_EVAL, cfg.eval.lm_eval_limit)
    missing_tasks = [t for t in cfg.eval.lm_eval_tasks if t not in general]

    if len(done) < len(sets) or missing_tasks:
        t = time.time()
        path = resolve_model(str(model_path), cfg.model.cache_dir)
        tokenizer = load_tokenizer(path, cfg.model.trust_remote_code)
        fmt = PromptFormat.for_tokenizer(tokenizer, cfg.model)
        model = load_model(path, cfg.model.trust_remote_code).eval()
        if torch.cuda.is_available():
            model.to("cuda")
        bf16 = use_bf16(cfg.eval.bf16)
        log(f"eval: loaded {model_path} in {time.time() - t:.1f}s (prompt format {fmt.kind}, bf16 {bf16})")
        try:
            for name, rows in sets.items():
                if name in done:
                    continue
                t = time.time()
                records, stages = score_set(model, tokenizer, fmt, rows, specs[name],
                                            entailment_direction(name, scenario_family), judges, cfg, bf16,
                                            name, progress)
                seconds = time.time() - t
                summary = {
                    "means": set_means(records),
                    "n": len(records),
                    "seconds": round(seconds, 3),
                    "examples_per_s": len(records) / max(seconds, 1e-9),
                    "stage_seconds": stages,
                    "questions_sha256": _questions_key(rows),
                    "judges": judges_id,
                }
                _write_jsonl(out_dir / f"{name}.jsonl", records)
                write_json(out_dir / f"{name}.summary.json", summary)  # last: marks the set done
                log(f"eval {name}: {len(records)} examples in {seconds:.1f}s "
                    f"({summary['examples_per_s']:.2f} examples/s)")
                done[name] = summary
            if missing_tasks:
                from unlearnlm.evaluation.harness import run_lm_eval

                general.update(run_lm_eval(model, tokenizer, missing_tasks, cfg.eval.lm_eval_limit, cfg.eval.batch_size))
                write_json(out_dir / LM_EVAL, general)
                for task in missing_tasks:
                    r = general[task]
                    log(f"eval lm-eval {task}: {r['metric']} {r['value']:.3f} +- {r['stderr'] or 0:.3f} on {r['n']}")
        finally:
            del model
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    means = {name: done[name]["means"] for name in sets}
    summary = {
        "model": str(model_path),
        "scenario": scenario_family,
        "sets": means,
        "n": {name: done[name]["n"] for name in sets},
        "aggregates": aggregate(means, scenario_family),
        "judges": judges_id,
        "seconds": round(sum(done[name]["seconds"] for name in sets)
                         + sum(general[t]["seconds"] for t in cfg.eval.lm_eval_tasks), 3),
        "wall_seconds": round(time.time() - wall, 3),
    }
    if cfg.eval.lm_eval_tasks:
        summary["lm_eval"] = {t: general[t] for t in cfg.eval.lm_eval_tasks}
    write_json(out_dir / SUMMARY, summary)
    return summary


def forget_quality_for(summary_dir: str | Path, retain_model_dir: str | Path) -> float | None:
    """KS p-value between the forget-set raw truth ratios in two evaluation folders (the
    unlearned model's and the retain model's); None when either lacks ``forget.jsonl``."""
    values = []
    for d in (summary_dir, retain_model_dir):
        path = Path(d) / "forget.jsonl"
        if not path.is_file():
            return None
        # An infinite R is stored as null: rebuild it from the NLL fields.
        values.append([
            r["truth_ratio_raw"] if r.get("truth_ratio_raw") is not None
            else truth_ratio_raw(r["nll_base"], r["nll_perturbed"])
            for r in read_records(path)
        ])
    if not values[0] or not values[1]:
        return None
    return forget_quality(values[0], values[1])
