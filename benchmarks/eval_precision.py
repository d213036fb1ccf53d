"""What bf16 evaluation changes: the same model evaluated in fp32 and in a bf16 mode, side by side.

    python benchmarks/eval_precision.py --model ~/.cache/unlearnlm/finetuned/<key>/target \
        [--modes weights,true] [--ds-size 20] [--out /tmp/eval_precision] [--threads auto]

Issue 17 asks that the evaluation precision be chosen knowing its effect on the metrics. Each
mode (``eval.bf16``: ``weights`` casts the weights to bf16, ``true`` runs bf16 autocast) is
evaluated with the demo preset's sets, judges and the paper's six metrics, and compared with
fp32 (``eval.bf16=false``) on the same questions: how many greedy generations change, and per
set and metric the difference of the set means (largest first), and of MU, MU Retain and FE.
Evaluations are cached under ``--out`` (a rerun only prints). Timings are printed but are not
the point: on a processor without native bf16 the bf16 modes are emulated and slower.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SIX = "[rouge,probability,truth_ratio,token_entropy,cosine_similarity,entailment]"


def _evaluate(model: str, mode: str, ds_size: int, out: Path) -> tuple[dict, dict[str, list[dict]], float]:
    """(summary, records per set, seconds) of ``model`` evaluated with ``eval.bf16=mode``."""
    from unlearnlm.config import load_config
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.evaluation.evaluate import evaluate_model
    from unlearnlm.evaluation.judges.factory import exclude_questions_for, load_judges
    from unlearnlm.evaluation.store import read_records

    cfg = load_config("demo", [f"eval.bf16={mode}", f"eval.ds_size={ds_size}", f"eval.metrics={SIX}",
                               "eval.bootstrap_resamples=0"])
    sets = tofu.eval_sets(resolve_data_dir(cfg.data.data_dir), cfg.data.split, cfg.data.tasks, ds_size)
    start = time.perf_counter()
    summary = evaluate_model(model, cfg, sets, "tofu", out / mode, load_judges(cfg, exclude_questions_for(cfg)))
    seconds = time.perf_counter() - start
    return summary, {s: read_records(out / mode / f"{s}.jsonl") for s in sets}, seconds


def differences(base: tuple[dict, dict], other: tuple[dict, dict]) -> tuple[int, int, list[tuple[str, float]]]:
    """(changed generations, questions, [(name, other - base)] largest |difference| first) over
    every set mean of the six metrics and the aggregates."""
    (summary_a, records_a), (summary_b, records_b) = base, other
    changed = sum(a["generation"] != b["generation"] for s in records_a for a, b in zip(records_a[s], records_b[s]))
    total = sum(len(r) for r in records_a.values())
    diffs = [(f"{s} {m}", summary_b["sets"][s][m] - v) for s, means in summary_a["sets"].items()
             for m, v in means.items() if v is not None and summary_b["sets"][s].get(m) is not None]
    diffs += [(k, summary_b["aggregates"][k] - v) for k, v in summary_a["aggregates"].items()
              if v is not None and summary_b["aggregates"].get(k) is not None]
    return changed, total, sorted(diffs, key=lambda d: -abs(d[1]))


def largest_per_question(base: dict[str, list[dict]], other: dict[str, list[dict]], metric: str) -> float:
    """The largest |other - base| of one metric over every question of every set."""
    return max((abs(b[metric] - a[metric]) for s in base for a, b in zip(base[s], other[s])
                if a.get(metric) is not None and b.get(metric) is not None), default=0.0)


def main() -> int:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--model", default=common.MODEL_ALIAS, help="model folder or offline alias (a fine-tuned target)")
    p.add_argument("--modes", default="weights,true", help="eval.bf16 modes compared with fp32 (default weights,true)")
    p.add_argument("--ds-size", type=int, default=20, help="questions per set (default 20, the demo's)")
    p.add_argument("--out", default="/tmp/eval_precision", help="cache of the evaluations")
    args = p.parse_args()
    threads = common.set_threads(args.threads)
    start = common.header("eval_precision", threads)
    out = Path(args.out).expanduser()
    fp32 = _evaluate(args.model, "false", args.ds_size, out)
    print(f"fp32: {fp32[2]:.1f} s")
    for mode in args.modes.split(","):
        other = _evaluate(args.model, mode, args.ds_size, out)
        changed, total, diffs = differences(fp32[:2], other[:2])
        print(f"\neval.bf16={mode}: {other[2]:.1f} s; {changed} of {total} greedy generations differ from fp32")
        print("largest differences of the set means and aggregates (bf16 - fp32):")
        for name, d in diffs[:8]:
            print(f"  {name:32s} {d:+.4f}")
        print("largest per-question difference: " + ", ".join(
            f"{m} {largest_per_question(fp32[1], other[1], m):.4f}" for m in ("probability", "truth_ratio", "rouge")))
        print(f"SUMMARY eval_precision {mode}: largest |set mean or aggregate difference| against fp32 "
              f"({diffs[0][0]}) = {abs(diffs[0][1]):.4f}; {changed}/{total} generations changed (no goal: a report)")
    common.footer(start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
