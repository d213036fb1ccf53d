"""TOFU and real-world selections: forget tasks, their retain sets, evaluation sets.

    rows = forget_rows(data_dir, "forget01", ["1"])          # 40 QA
    rows = retain_rows(data_dir, "forget01", ["1"])          # retain90 + tasks 2..10 = 3,960 QA
    sets = eval_sets(data_dir, "forget01", ["1"], ds_size=300)
"""
from __future__ import annotations

from pathlib import Path

from unlearnlm.data.loading import read_jsonl, read_lines
from unlearnlm.errors import DataError

QA = ("question", "answer")
PERTURBED = ("question", "answer", "paraphrased_answer", "perturbed_answer")
RETAIN_FOR = {"forget01": "retain90", "forget05": "retain50", "forget10": "retain10"}
REAL_WORLD = "real_world"


def _file(data_dir: Path, split: str, name: str) -> Path:
    sub = "real_world" if split == REAL_WORLD else "tofu"
    return Path(data_dir) / sub / f"{name}.json"


def task_ids(data_dir: Path, split: str) -> list[str]:
    """Task ids of a forget file, in file order."""
    rows = read_jsonl(_file(data_dir, split, "forget"if split == REAL_WORLD else split), ("task_id",))
    return list(dict.fromkeys(str(r["task_id"]) for r in rows))


def _select_tasks(rows: list[dict], tasks: list[str], path: Path) -> list[dict]:
    wanted = [str(t) for t in tasks]
    present = list(dict.fromkeys(str(r["task_id"]) for r in rows))
    unknown = [t for t in wanted if t not in present]
    if unknown:
        raise DataError(
            f"{path}: unknown task id {unknown[0]!r} (field 'task_id'); this file has tasks {', '.join(present)}"
        )
    picked = [r for r in rows if str(r["task_id"]) in wanted]
    if not picked:
        raise DataError(f"{path}: no rows for tasks {wanted}")
    return picked


def forget_rows(data_dir: Path, split: str, tasks: list[str], perturbed: bool = False) -> list[dict]:
    """QA rows of the given forget tasks (real-world: ``answer`` is the training target)."""
    name = ("forget" if split == REAL_WORLD else split) + ("_perturbed" if perturbed else "")
    path = _file(data_dir, split, name)
    fields = (PERTURBED if perturbed else QA) + ("task_id",)
    if split == REAL_WORLD:
        fields += ("golden_answer",)
    rows = read_jsonl(path, fields, list_fields=("perturbed_answer",))
    return _select_tasks(rows, tasks, path)


def retain_rows(data_dir: Path, split: str, unlearned_tasks: list[str]) -> list[dict]:
    """Everything the model should still know: retain{N} plus the not-yet-unlearned tasks
    of the same forget file (data README). Real-world: the neighbor set."""
    if split == REAL_WORLD:
        return read_jsonl(_file(data_dir, split, "neighbor"), QA + ("golden_answer",))
    if split not in RETAIN_FOR:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(RETAIN_FOR)} or {REAL_WORLD}")
    base = read_jsonl(_file(data_dir, split, RETAIN_FOR[split]), QA)
    path = _file(data_dir, split, split)
    all_forget = read_jsonl(path, QA + ("task_id",))
    _select_tasks(all_forget, unlearned_tasks, path)  # validates the ids
    done = {str(t) for t in unlearned_tasks}
    return base + [r for r in all_forget if str(r["task_id"]) not in done]


def all_tofu_rows(data_dir: Path) -> list[dict]:
    """All 4,000 TOFU QA (forget10's 9 tasks + retain10): TOFU's fine-tuning set."""
    return read_jsonl(_file(data_dir, "forget10", "forget10"), QA) + read_jsonl(
        _file(data_dir, "forget10", "retain10"), QA
    )


def idk_answers(data_dir: Path) -> list[str]:
    return read_lines(Path(data_dir) / "idontknow.jsonl")


def interleave_tasks(rows: list[dict]) -> list[dict]:
    """Rows reordered round-robin over their ``task_id`` (first row of each task, then the
    second, ...), so that any prefix covers every task evenly. One task: order unchanged."""
    by_task: dict[str, list[dict]] = {}
    for row in rows:
        by_task.setdefault(str(row["task_id"]), []).append(row)
    queues = list(by_task.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def eval_sets(data_dir: Path, split: str, tasks: list[str], ds_size: int) -> dict[str, list[dict]]:
    """Evaluation sets of a scenario, each capped at ``ds_size`` rows (first rows kept). A forget
    set of several tasks is interleaved first, so the cap keeps every task (continual runs)."""
    if split == REAL_WORLD:
        neighbor_path = _file(data_dir, split, "neighbor_perturbed")
        sets = {
            "forget": interleave_tasks(forget_rows(data_dir, split, tasks, perturbed=True)),
            "neighbor": read_jsonl(neighbor_path, PERTURBED + ("golden_answer",), ("perturbed_answer",)),
        }
    else:
        utility = ("question", "answer", "perturbed_answer", "original_answer")
        sets = {
            "forget": interleave_tasks(forget_rows(data_dir, split, tasks, perturbed=True)),
            "retain": read_jsonl(_file(data_dir, split, "retain_perturbed"), PERTURBED, ("perturbed_answer",)),
            "real_authors": read_jsonl(_file(data_dir, split, "real_authors_perturbed"), utility, ("perturbed_answer",)),
            "world_facts": read_jsonl(_file(data_dir, split, "world_facts_perturbed"), utility, ("perturbed_answer",)),
        }
    return {name: rows[:ds_size] for name, rows in sets.items()}


def demo_retain_rows(data_dir: Path, n: int) -> list[dict]:
    """The first ``n`` QA of the retain evaluation authors (retain_perturbed = retain90[:400])."""
    rows = read_jsonl(_file(data_dir, "forget01", "retain_perturbed"), QA)
    if n > len(rows):
        raise DataError(f"finetune.retain_rows={n} exceeds the {len(rows)} rows of retain_perturbed.json")
    return rows[:n]
