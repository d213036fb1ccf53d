"""Unlearning: a Hugging Face Trainer whose loss is the method.

    out = unlearn_model(cfg, "ME+GD", model_path, out_dir, forget_tasks=["1"])

The reference model is loaded only for methods that need it (NPO, DPO, KL, LLMU).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from unlearnlm.config.load import config_to_dict
from unlearnlm.config.schema import RunConfig, UnlearnConfig
from unlearnlm.data import tofu
from unlearnlm.data.loading import resolve_data_dir
from unlearnlm.data.prompts import PromptFormat
from unlearnlm.errors import ConfigError, DataError, NumericalError
from unlearnlm.io import write_json
from unlearnlm.methods import LossConfig, LossContext, get_method
from unlearnlm.models.loading import load_model, load_tokenizer, resolve_model
from unlearnlm.training.base import UnlearnLMTrainerBase, last_checkpoint, save_final, training_arguments
from unlearnlm.training.finetune import finetune_rows
from unlearnlm.training.manifest import environment_info
from unlearnlm.training.unlearn_data import PartsCollator, UnlearnDataset
from unlearnlm.utils import log

MANIFEST = "unlearnlm_manifest.json"


def method_settings(ucfg: UnlearnConfig, name: str) -> UnlearnConfig:
    """The unlearning options for one method: defaults, then ``per_method[name]``."""
    method = get_method(name)
    over = dict(ucfg.per_method.get(name, {}))
    train = dataclasses.replace(ucfg.train, **{k: over.pop(k) for k in ("lr", "epochs") if k in over})
    settings = dataclasses.replace(ucfg, method=name, train=train, per_method={}, **over)
    if settings.mask_question is None:  # the paper: ME learns from question tokens too
        settings = dataclasses.replace(settings, mask_question=method.forget is not get_method("ME").forget)
    return settings


class UnlearnTrainer(UnlearnLMTrainerBase):
    """Trainer whose loss is ``forget_coeff * L_F + reg_coeff * L_R``."""

    def __init__(self, *args, method, loss_cfg: LossConfig, forget_coeff: float, reg_coeff: float,
                 ref_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method, self.loss_cfg = method, loss_cfg
        self.forget_coeff, self.reg_coeff = forget_coeff, reg_coeff
        self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean: let Trainer divide by accumulation
        self._loss_logs: dict[str, list[float]] = {}
        self.ref_model = self._prepare_ref(ref_model) if ref_model is not None else None

    def _prepare_ref(self, ref):
        ref.eval()
        ref.requires_grad_(False)
        if self.is_deepspeed_enabled:  # ZeRO-3 shards the frozen copy as well (as TRL does)
            import deepspeed

            config = dict(self.accelerator.state.deepspeed_plugin.deepspeed_config)
            config.pop("optimizer", None)
            config.pop("scheduler", None)
            if config.get("zero_optimization", {}).get("stage") != 3:
                config["zero_optimization"] = {"stage": 0}
            engine, *_ = deepspeed.initialize(model=ref, config=config)
            engine.eval()
            return engine
        return self.accelerator.prepare_model(ref, evaluation_mode=True)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.count_tokens(inputs)
        ctx = LossContext(model, inputs, self.ref_model)
        loss, logs = self.method.loss(ctx, self.loss_cfg, self.forget_coeff, self.reg_coeff)
        self.check_finite(loss)
        for k, v in logs.items():
            self._loss_logs.setdefault(k, []).append(v)
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        for k, values in self._loss_logs.items():
            logs[k] = round(sum(values) / len(values), 4)
        self._loss_logs = {}
        super().log(logs, *args, **kwargs)


class EpochSaver(TrainerCallback):
    """Saves a plain HF model folder after every epoch (unlearning-dynamics curves)."""

    def __init__(self, out_dir: Path, tokenizer):
        self.out_dir, self.tokenizer = out_dir, tokenizer

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if args.should_save and model is not None:
            path = self.out_dir / "epochs" / f"epoch-{round(state.epoch)}"
            model.save_pretrained(path, safe_serialization=True)
            self.tokenizer.save_pretrained(path)


def unlearning_rows(cfg: RunConfig, forget_tasks: list[str], unlearned_tasks: list[str]) -> tuple[list, list]:
    """(forget rows, retain rows) of one unlearning job."""
    data_dir = resolve_data_dir(cfg.data.data_dir)
    forget = tofu.forget_rows(data_dir, cfg.data.split, forget_tasks)
    if cfg.unlearn.retain_set == "target_data" and cfg.data.split != tofu.REAL_WORLD:
        gone = {r["question"] for r in tofu.forget_rows(data_dir, cfg.data.split, unlearned_tasks)}
        retain = [r for r in finetune_rows(cfg, "target") if r["question"] not in gone]
    else:
        retain = tofu.retain_rows(data_dir, cfg.data.split, unlearned_tasks)
    if not retain:
        raise DataError("unlearn: the retain set is empty; choose unlearn.retain_set=tofu or more finetune.retain_rows")
    return forget, retain


def unlearn_model(
    cfg: RunConfig, method_name: str, model_path: str | Path, out_dir: Path,
    forget_tasks: list[str] | None = None, unlearned_tasks: list[str] | None = None,
    ref_path: str | Path | None = None,
) -> dict:
    """Unlearn ``forget_tasks`` from ``model_path`` into ``out_dir``; returns the manifest.

    ``unlearned_tasks`` (continual): every task unlearned so far, current one included, so the
    retain set shrinks. ``ref_path``: reference model (default: ``model_path``).
    """
    if (out_dir / MANIFEST).is_file():
        log(f"[unlearn] {method_name}: cached at {out_dir}")
        from unlearnlm.io import read_json

        return read_json(out_dir / MANIFEST)
    settings = method_settings(cfg.unlearn, method_name)
    method = get_method(method_name)
    forget_tasks = forget_tasks or cfg.data.tasks
    unlearned_tasks = unlearned_tasks or forget_tasks
    train = settings.train
    loss_cfg = LossConfig(beta=settings.beta, me_direction=settings.me_direction)

    model_path = resolve_model(str(model_path), cfg.model.cache_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    fmt = PromptFormat.for_tokenizer(tokenizer, cfg.model)
    forget, retain = unlearning_rows(cfg, forget_tasks, unlearned_tasks)
    idk = tofu.idk_answers(resolve_data_dir(cfg.data.data_dir))
    dataset = UnlearnDataset(forget, retain, idk, tokenizer, fmt, method.parts, settings.mask_question,
                             train.max_length, train.seed)
    model = load_model(model_path, cfg.model.trust_remote_code)
    if train.gradient_checkpointing:
        model.config.use_cache = False
    if train.lora:
        model = _with_lora(model, train)
    ref = None
    if method.needs_ref:
        ref = load_model(resolve_model(str(ref_path or model_path), cfg.model.cache_dir), cfg.model.trust_remote_code)

    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    args = training_arguments(train, ckpt_dir, len(dataset))
    trainer = UnlearnTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=PartsCollator(tokenizer.pad_token_id),
        lengths=dataset.lengths(), method=method, loss_cfg=loss_cfg,
        forget_coeff=settings.forget_coeff, reg_coeff=settings.reg_coeff, ref_model=ref,
    )
    if train.save_every_epoch:
        trainer.add_callback(EpochSaver(out_dir.with_name(out_dir.name + ".epochs-tmp"), tokenizer))
    resume = last_checkpoint(ckpt_dir)
    log(f"[unlearn] {method_name}: {len(forget)} forget / {len(retain)} retain QA, {train.epochs:g} epochs, "
        f"lr {train.lr:g}, forget_coeff {settings.forget_coeff:g}, reg_coeff {settings.reg_coeff:g}, "
        f"ref model {'loaded' if ref is not None else 'not needed'}" + (f", resuming from {resume}" if resume else ""))
    start = time.time()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - start
    save_final(trainer, tokenizer, out_dir, train.merge_lora)
    manifest = {
        "kind": "unlearned", "method": method_name, "base_model": str(model_path),
        "ref_model": str(ref_path or model_path) if ref is not None else None,
        "forget_tasks": forget_tasks, "unlearned_tasks": unlearned_tasks, "split": cfg.data.split,
        "n_forget": len(forget), "n_retain": len(retain), "settings": config_to_dict(settings),
        "seed": train.seed, "seconds": round(seconds, 1),
        "real_tokens_per_s": round(trainer.real_tokens / max(seconds, 1e-9), 1),
        "log_history": trainer.state.log_history, "environment": environment_info(),
    }
    if trainer.args.should_save:
        epochs_tmp = out_dir.with_name(out_dir.name + ".epochs-tmp") / "epochs"
        if epochs_tmp.is_dir():
            shutil.move(str(epochs_tmp), str(out_dir / "epochs"))
            shutil.rmtree(epochs_tmp.parent, ignore_errors=True)
        write_json(out_dir / MANIFEST, manifest)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    log(f"[unlearn] {method_name}: done in {seconds:.0f}s, {manifest['real_tokens_per_s']:.0f} real tokens/s -> {out_dir}")
    return manifest


def _with_lora(model, train):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


__all__ = ["unlearn_model", "method_settings", "UnlearnTrainer", "ConfigError", "NumericalError", "torch"]
