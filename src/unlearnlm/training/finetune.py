"""Fine-tune the *target* (knows forget + retain data) and the *retain* model (without the forget data).

    paths = finetune_models(cfg)            # {"target": Path, "retain": Path}, cached by content

Both are plain Hugging Face folders with an ``unlearnlm_manifest.json`` (``layout.py``).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from unlearnlm.config.load import config_to_dict, model_key_options, result_train_options
from unlearnlm.config.schema import RunConfig, TrainConfig
from unlearnlm.data import tofu
from unlearnlm.data.collate import QACollator
from unlearnlm.data.loading import resolve_data_dir
from unlearnlm.data.prompts import PromptFormat, encode_qa
from unlearnlm.errors import DataError
from unlearnlm.models.loading import load_model, load_tokenizer, resolve_model
from unlearnlm.models.offline import cache_root
from unlearnlm.training.base import UnlearnLMTrainerBase, train_job, training_arguments
from unlearnlm.training.layout import ModelFolder
from unlearnlm.utils import log

def finetune_rows(cfg: RunConfig, which: str) -> list[dict]:
    """Training QA of the target or the retain model."""
    data_dir = resolve_data_dir(cfg.data.data_dir)
    if cfg.data.split == tofu.REAL_WORLD:
        raise DataError("finetune: the real-world scenario starts from an instruct model as it is; nothing to fine-tune")
    forget = tofu.forget_rows(data_dir, cfg.data.split, cfg.data.tasks)
    if cfg.finetune.retain_rows is None:
        everything = tofu.all_tofu_rows(data_dir)
        if which == "target":
            return everything
        # by (question, answer): TOFU asks "What is the full name of the author?" of two authors
        forgotten = {(r["question"], r["answer"]) for r in forget}
        return [r for r in everything if (r["question"], r["answer"]) not in forgotten]
    retain = tofu.demo_retain_rows(data_dir, cfg.finetune.retain_rows)
    return forget + retain if which == "target" else retain


def selection_key(cfg: RunConfig) -> str:
    """Content key of a fine-tuning job: model, data selection, prompt format and recipe."""
    finetune = config_to_dict(cfg.finetune) | {"check_size": None, "check_max_new_tokens": None}
    finetune["train"] = result_train_options(finetune["train"])
    payload = {"model": model_key_options(cfg.model), "split": cfg.data.split, "tasks": cfg.data.tasks,
               "finetune": finetune}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def default_finetune_dir(cfg: RunConfig) -> Path:
    return cache_root(cfg.model.cache_dir) / "finetuned" / f"{Path(cfg.model.name).name}-{selection_key(cfg)}"


def qa_trainer(base: str | Path, rows: list[dict], train: TrainConfig, folder: ModelFolder, model_cfg):
    """(trainer, tokenizer, prompt format) that fine-tunes ``base`` on the (question, answer)
    ``rows``, answers only in the loss; shared by fine-tuning and the relearning attack."""
    tokenizer = load_tokenizer(base, model_cfg.trust_remote_code)
    fmt = PromptFormat.for_tokenizer(tokenizer, model_cfg)
    features = [encode_qa(tokenizer, fmt, r["question"], r["answer"], True, train.max_length) for r in rows]
    model = load_model(base, model_cfg.trust_remote_code)
    if train.gradient_checkpointing:
        model.config.use_cache = False
    trainer = UnlearnLMTrainerBase(
        model=model, args=training_arguments(train, folder.checkpoints, len(features)), train_dataset=features,
        data_collator=QACollator(tokenizer.pad_token_id), lengths=[len(f["input_ids"]) for f in features],
    )
    return trainer, tokenizer, fmt


def finetune_one(cfg: RunConfig, which: str, out_dir: Path) -> Path:
    """Train one model into ``out_dir`` (resumes from its last epoch checkpoint)."""
    train = cfg.finetune.train
    base = resolve_model(cfg.model.name, cfg.model.cache_dir)
    state: dict = {}

    def build(folder: ModelFolder, resume: str | None):
        rows = finetune_rows(cfg, which)
        trainer, tokenizer, fmt = qa_trainer(base, rows, train, folder, cfg.model)
        state.update(tokenizer=tokenizer, fmt=fmt, rows=rows)
        return trainer, tokenizer, f"{len(rows)} QA x {train.epochs:g} epochs, lr {train.lr:g}, base {cfg.model.name}"

    def finish(trainer, seconds: float) -> dict:
        rows = state["rows"]
        check = memorisation_check(trainer.model, state["tokenizer"], state["fmt"], rows, cfg, which)
        log(f"[finetune] {which}: final loss {_final_loss(trainer):.4f}")
        return {
            "kind": f"finetuned-{which}", "base_model": cfg.model.name, "base_path": base,
            "split": cfg.data.split, "tasks": cfg.data.tasks, "n_examples": len(rows),
            "retain_rows": cfg.finetune.retain_rows, "prompt_format": state["fmt"].kind,
            "hyperparameters": config_to_dict(train), "seed": train.seed,
            "final_loss": _final_loss(trainer), "train_loss": trainer.state.log_history[-1].get("train_loss"),
            "train_question_rouge_l_recall": check,
        }

    train_job(out_dir, f"[finetune] {which}", build, finish, train.merge_lora)
    return out_dir


def memorisation_check(model, tokenizer, fmt: PromptFormat, rows: list[dict], cfg: RunConfig,
                       which: str) -> dict | None:
    """Mean ROUGE-L recall of greedy answers to ``finetune.check_size`` training questions
    (evenly spread over ``rows``): did the model learn what it was trained on?"""
    from unlearnlm.evaluation.generation import decode, generate_greedy
    from unlearnlm.evaluation.metrics import rouge_l_recall
    from unlearnlm.models.loading import use_bf16

    n = min(cfg.finetune.check_size, len(rows))
    if n == 0:
        return None
    picked = [rows[i * len(rows) // n] for i in range(n)]
    start = time.time()
    was_training = model.training
    model.eval()
    ids = generate_greedy(model, tokenizer, fmt, [r["question"] for r in picked],
                          cfg.finetune.check_max_new_tokens, cfg.eval.batch_size, use_bf16(cfg.eval.bf16))
    model.train(was_training)
    scores = [rouge_l_recall(decode(tokenizer, g), r["answer"]) for g, r in zip(ids, picked)]
    mean = sum(scores) / n
    log(f"[finetune] {which}: ROUGE-L recall of greedy answers on {n} training questions: {mean:.3f} "
        f"({time.time() - start:.0f}s)")
    return {"n": n, "mean": round(mean, 4), "at_least_0.9": round(sum(s >= 0.9 for s in scores) / n, 4)}


def _final_loss(trainer) -> float | None:
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return float(losses[-1]) if losses else None


def finetune_models(cfg: RunConfig, out_root: Path | None = None, which=("target", "retain")) -> dict[str, Path]:
    """Fine-tune (or reuse) the target and retain models; returns their folders."""
    root = out_root or default_finetune_dir(cfg)
    torch.manual_seed(cfg.finetune.train.seed)
    return {w: finetune_one(cfg, w, root / w) for w in which}
