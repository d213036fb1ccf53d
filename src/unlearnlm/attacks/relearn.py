"""Relearning attack: a little fine-tuning on half the forget set, scored on the other half
(Hu et al. 2024, arXiv 2406.13356; Lynch et al. 2024, arXiv 2402.16835; docs/method.md, section 9).

    trained_on, scored = halves(forget_rows, seed=0)   # disjoint, seeded
    relearn(ctx, model_dir, out_dir)                   # fine-tunes on ``trained_on``
    relearn_retain(ctx, model_dir, out_dir)            # as many retain QA instead (benign)
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from unlearnlm.config.schema import TrainConfig


def halves(rows: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """(rows the attack trains on, rows it is scored on): a seeded shuffle cut in two, the
    first half rounded down. No question is in both."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = len(rows) // 2
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def relearn_train(ctx) -> TrainConfig:
    """The attack's budget: ``relearn_epochs`` at the fine-tuning learning rate and batch size
    (``relearn_lr`` overrides the rate), no warm-up, no LoRA."""
    ft = ctx.cfg.finetune.train
    s = ctx.settings
    return dataclasses.replace(ft, epochs=s.relearn_epochs, lr=s.relearn_lr or ft.lr, warmup_epochs=0.0,
                               seed=s.seed, lora=False, save_every_epoch=False, report_to="none")


def _train(ctx, model_dir: Path, out_dir: Path, rows: list[dict], what: str) -> None:
    from unlearnlm.training.base import train_job
    from unlearnlm.training.finetune import qa_trainer

    train = relearn_train(ctx)

    def build(folder, resume):
        trainer, tokenizer, _ = qa_trainer(str(model_dir), rows, train, folder, ctx.cfg.model)
        return trainer, tokenizer, f"{len(rows)} {what} QA x {train.epochs:g} epochs, lr {train.lr:g}, from {model_dir}"

    def finish(trainer, seconds):
        return {"kind": "attack-relearn", "attacked_model": str(model_dir), "trained_on": what,
                "questions": [r["question"] for r in rows], "hyperparameters": dataclasses.asdict(train)}

    train_job(out_dir, f"[attack] relearn on {what}", build, finish, merge_lora=False)


def relearn(ctx, model_dir: Path, out_dir: Path) -> None:
    """Fine-tune on the forget half the attack trains on."""
    _train(ctx, model_dir, out_dir, ctx.trained_on, "forget")


def relearn_retain(ctx, model_dir: Path, out_dir: Path) -> None:
    """Fine-tune on as many retain QA (seeded draw) for the same budget: benign fine-tuning."""
    n = min(len(ctx.trained_on), len(ctx.retain))
    rows = random.Random(ctx.settings.seed).sample(list(ctx.retain), n)
    _train(ctx, model_dir, out_dir, rows, "retain")
