"""The holdout set of the membership-inference metrics: TOFU QA the target never saw (docs/method.md, section 7).

    rows, source = holdout_rows(cfg)    # (None, why not) when there is none

In this order: TOFU's own ``holdout01/05/10`` (the one that goes with ``data.split``) when it is
in the data directory or was fetched (``unlearnlm data fetch``); otherwise, for a target
fine-tuned here, the QA of the retain evaluation authors (``retain_perturbed.json``, 20 QA per
author) of which neither the target's fine-tuning nor the unlearning retain set has a question
(so none with ``unlearn.retain_set=tofu``, which holds them all): same distribution, never trained on. A given
target (``model.target``), a target that saw every author and the real-world family get none,
so the membership-inference metrics are skipped, never computed against members.
"""
from __future__ import annotations

from pathlib import Path

from unlearnlm.config.schema import RunConfig
from unlearnlm.data import tofu
from unlearnlm.data.loading import read_jsonl, resolve_data_dir

HOLDOUT_FOR = {"forget01": "holdout01", "forget05": "holdout05", "forget10": "holdout10"}
AUTHOR_QA = 20  # TOFU: 20 QA per author, in file order


def _tofu_holdout_file(cfg: RunConfig, data_dir: Path) -> Path | None:
    from unlearnlm.data.fetch import fetched_dir

    name = HOLDOUT_FOR.get(cfg.data.split)
    if name is None:
        return None
    for folder in (data_dir / "tofu", fetched_dir(cfg.model.cache_dir) / "tofu"):
        if (folder / f"{name}.json").is_file() or (folder / f"{name}.json.gz").is_file():
            return folder / f"{name}.json"  # read_jsonl opens NAME, else NAME.gz
    return None


def unseen_author_rows(data_dir: Path, trained_questions: set[str], n: int) -> list[dict]:
    """The first ``n`` QA of the retain evaluation authors none of whose questions was trained on."""
    rows = read_jsonl(data_dir / "tofu" / "retain_perturbed.json", tofu.QA)
    blocks = [rows[i : i + AUTHOR_QA] for i in range(0, len(rows), AUTHOR_QA)]
    unseen = [r for block in blocks if not any(r["question"] in trained_questions for r in block) for r in block]
    return unseen[:n]


def holdout_rows(cfg: RunConfig) -> tuple[list[dict] | None, str]:
    """(holdout QA rows, where they come from), or (None, the one-line reason there are none)."""
    if cfg.data.split == tofu.REAL_WORLD:
        return None, "no holdout set for the real-world family: membership inference skipped"
    data_dir = resolve_data_dir(cfg.data.data_dir)
    path = _tofu_holdout_file(cfg, data_dir)
    if path is not None:
        return read_jsonl(path, tofu.QA), f"TOFU {path.stem} ({path})"
    if cfg.model.target:
        return None, ("model.target: its training data is unknown and TOFU's holdout sets are not here "
                      "(unlearnlm data fetch): membership inference skipped")
    from unlearnlm.training.finetune import finetune_rows

    n = len(tofu.forget_rows(data_dir, cfg.data.split, cfg.data.tasks))
    trained = {r["question"] for r in finetune_rows(cfg, "target")}
    if cfg.unlearn.retain_set == "tofu":  # unlearning then trains on TOFU's retain set, every author of it
        trained |= {r["question"] for r in tofu.retain_rows(data_dir, cfg.data.split, cfg.data.tasks)}
    rows = unseen_author_rows(data_dir, trained, n)
    if not rows:
        why = ("unlearn.retain_set=tofu trains on every retain author" if cfg.unlearn.retain_set == "tofu"
               else "the target saw every TOFU author")
        return None, f"{why} and TOFU's holdout sets are not here (unlearnlm data fetch): membership inference skipped"
    return rows, f"{len(rows)} QA of retain_perturbed authors the target never saw"
