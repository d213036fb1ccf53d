"""Unlearning: a Hugging Face Trainer whose loss is the method.

    manifest = unlearn_model(cfg, "ME+GD", model_path, out_dir, forget_tasks=["1"])

The reference model is loaded only for methods that need it (NPO, DPO, KL, LLMU, UNDIAL,
RMU's ACT). State that lives across steps (RMU's control vector, PDU's dual variable) is
initialised once, updated after each optimiser step, and saved in every checkpoint, so a
resumed run continues exactly where it stopped (docs/method.md, "Resume").
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback

from unlearnlm.config.load import config_to_dict, result_train_options
from unlearnlm.config.schema import RunConfig
from unlearnlm.data import tofu
from unlearnlm.data.loading import resolve_data_dir
from unlearnlm.data.prompts import PromptFormat
from unlearnlm.errors import ConfigError, DataError
from unlearnlm.methods import LossContext
from unlearnlm.methods.settings import ResolvedMethod, resolve_method
from unlearnlm.models.compat import add_legacy_keys
from unlearnlm.models.loading import load_model, load_tokenizer, resolve_model
from unlearnlm.training.base import UnlearnLMTrainerBase, train_job, training_arguments
from unlearnlm.training.finetune import finetune_rows
from unlearnlm.training.fsdp import shard_frozen, sharded_count
from unlearnlm.training.layout import ModelFolder
from unlearnlm.training.lora import BaseModelReference, with_lora
from unlearnlm.training.method_state import load_method_state, save_method_state
from unlearnlm.training.unlearn_data import PartsCollator, UnlearnDataset
from unlearnlm.utils import log


class UnlearnTrainer(UnlearnLMTrainerBase):
    """Trainer whose loss is ``forget_coeff * L_F + reg_coeff * L_R``, with the method's state."""

    def __init__(self, *args, resolved: ResolvedMethod, method_state: dict | None = None, ref_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method, self.settings = resolved.method, resolved.settings
        if self.is_fsdp_enabled and self.settings.loss_chunk_size:  # measured: the chunked head crashes under FSDP2
            raise ConfigError("unlearn.loss_chunk_size: not supported under FSDP (the output head's weight is "
                              "resharded after the forward); use 0, or DDP / ZeRO-3")
        self.method_state = method_state if method_state is not None else {}
        self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean: let Trainer divide by accumulation
        self._loss_logs: dict[str, list[float]] = {}  # since the last log
        self._step_logs: dict[str, list[float]] = {}  # since the last optimiser step
        self.ref_model = self._prepare_ref(ref_model) if ref_model is not None else None
        if self.method_state:
            self.add_callback(MethodStateCallback(self))

    def _prepare_ref(self, ref):
        if isinstance(ref, BaseModelReference):  # the policy itself, adapter disabled: nothing to prepare
            return ref
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
        if self.accelerator.is_fsdp2:  # accelerate would give every process a whole copy
            ref = shard_frozen(ref.to(self.accelerator.device))
            sharded, total = sharded_count(ref)
            log(f"[fsdp] reference model: {sharded} of {total} parameter tensors sharded")
            return ref
        return self.accelerator.prepare_model(ref, evaluation_mode=True)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.count_tokens(inputs)
        s = self.settings
        ctx = LossContext(model, inputs, self.ref_model, self.method_state, self.method.needs_hidden,
                          chunk_size=s.loss_chunk_size)
        loss, logs = self.method.loss(ctx, s, s.forget_coeff, s.reg_coeff)
        self.check_finite(loss)
        for k, v in logs.items():
            self._loss_logs.setdefault(k, []).append(v)
            self._step_logs.setdefault(k, []).append(v)
        return (loss, None) if return_outputs else loss

    def pop_step_means(self) -> dict[str, float]:
        """Each logged value's mean over the micro-batches of the last optimiser step (and over
        processes, so every rank updates its state alike)."""
        keys = sorted(self._step_logs)
        local = torch.tensor([sum(self._step_logs[k]) / len(self._step_logs[k]) for k in keys], dtype=torch.float64,
                             device=self.args.device)
        self._step_logs = {}
        means = self.accelerator.reduce(local, reduction="mean") if keys else local
        return dict(zip(keys, means.tolist()))

    def log(self, logs: dict, *args, **kwargs) -> None:
        for k, values in self._loss_logs.items():
            logs[k] = round(sum(values) / len(values), 4)
        self._loss_logs = {}
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # Written before super() writes trainer_state.json, which marks the checkpoint complete.
        if self.method_state and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            save_method_state(folder, self.method_state)
        super()._save_checkpoint(model, trial)


class MethodStateCallback(TrainerCallback):
    """After every optimiser step: the method updates its state (PDU's dual ascent)."""

    def __init__(self, trainer: UnlearnTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        t.method.after_step(t.method_state, t.pop_step_means(), t.settings, state.epoch)


class EpochSaver(TrainerCallback):
    """Saves a plain HF model folder after every epoch (unlearning-dynamics curves)."""

    def __init__(self, folder: ModelFolder, tokenizer):
        self.folder, self.tokenizer = folder, tokenizer

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if args.should_save and model is not None:
            path = self.folder.epoch_dir(round(state.epoch), while_training=True)
            model.save_pretrained(path, safe_serialization=True)
            self.tokenizer.save_pretrained(path)
            add_legacy_keys(path)


def unlearning_rows(cfg: RunConfig, forget_tasks: list[str], unlearned_tasks: list[str]) -> tuple[list, list]:
    """(forget rows, retain rows) of one unlearning job."""
    data_dir = resolve_data_dir(cfg.data.data_dir)
    forget = tofu.forget_rows(data_dir, cfg.data.split, forget_tasks)
    if cfg.unlearn.retain_set == "target_data" and cfg.data.split != tofu.REAL_WORLD:
        gone = {(r["question"], r["answer"]) for r in tofu.forget_rows(data_dir, cfg.data.split, unlearned_tasks)}
        retain = [r for r in finetune_rows(cfg, "target") if (r["question"], r["answer"]) not in gone]
    else:
        retain = tofu.retain_rows(data_dir, cfg.data.split, unlearned_tasks)
    if not retain:
        raise DataError("unlearn: the retain set is empty; choose unlearn.retain_set=tofu or more finetune.retain_rows")
    return forget, retain


def freeze_except(model: torch.nn.Module, pattern: str) -> int:
    """Train only parameters whose name matches ``pattern`` (re.search); -> how many match."""
    rx = re.compile(pattern)
    params = list(model.named_parameters())
    for name, param in params:
        param.requires_grad_(bool(rx.search(name)))
    matched = sum(p.requires_grad for _, p in params)
    if not matched:
        raise ConfigError(f"unlearn.trainable: {pattern!r} matches no parameter of the model "
                          f"(names look like {params[0][0]!r}, {params[len(params) // 2][0]!r})")
    return matched


def unlearn_model(
    cfg: RunConfig, method_name: str, model_path: str | Path, out_dir: Path,
    forget_tasks: list[str] | None = None, unlearned_tasks: list[str] | None = None,
    ref_path: str | Path | None = None,
) -> dict:
    """Unlearn ``forget_tasks`` from ``model_path`` into ``out_dir``; returns the manifest.

    ``unlearned_tasks`` (continual): every task unlearned so far, current one included, so the
    retain set shrinks. ``ref_path``: reference model (default: ``model_path``).
    """
    resolved = resolve_method(cfg.unlearn, method_name)
    method, settings = resolved.method, resolved.settings
    forget_tasks = forget_tasks or cfg.data.tasks
    unlearned_tasks = unlearned_tasks or forget_tasks
    train = settings.train
    identity = _job(cfg, resolved, model_path, ref_path, forget_tasks, unlearned_tasks)
    model_path = resolve_model(str(model_path), cfg.model.cache_dir)
    ref_path = ref_path or model_path
    job: dict = {}

    def build(folder: ModelFolder, resume: str | None):
        tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
        fmt = PromptFormat.for_tokenizer(tokenizer, cfg.model)
        forget, retain = unlearning_rows(cfg, forget_tasks, unlearned_tasks)
        idk = tofu.idk_answers(resolve_data_dir(cfg.data.data_dir))
        dataset = UnlearnDataset(forget, retain, idk, tokenizer, fmt, method.parts, settings.mask_question,
                                 train.max_length, train.seed)
        model = load_model(model_path, cfg.model.trust_remote_code)
        if train.gradient_checkpointing:
            model.config.use_cache = False
        n_trainable = freeze_except(model, settings.trainable) if settings.trainable else None
        state = method.init_state(model, settings, train.seed)
        if state and resume:
            state = load_method_state(Path(resume), set(state))
        if train.lora:
            model = with_lora(model, train)
        ref = None
        if method.needs_ref:
            ref = _reference(model, train.lora, ref_path, model_path, cfg)
        trainer = UnlearnTrainer(
            model=model, args=training_arguments(train, folder.checkpoints, len(dataset)), train_dataset=dataset,
            data_collator=PartsCollator(tokenizer.pad_token_id), lengths=dataset.lengths(),
            resolved=resolved, method_state=state, ref_model=ref,
        )
        if train.save_every_epoch:
            trainer.add_callback(EpochSaver(folder, tokenizer))
        job.update(folder=folder, n_forget=len(forget), n_retain=len(retain), ref=ref is not None,
                   n_trainable=n_trainable)
        return trainer, tokenizer, _description(len(forget), len(retain), settings, ref, n_trainable)

    def finish(trainer: UnlearnTrainer, seconds: float) -> dict:
        folder = job["folder"]
        _keep_epoch_snapshots(folder)
        if trainer.method_state:
            save_method_state(folder.path, trainer.method_state)
        return {
            "kind": "unlearned", "method": method_name, "base_model": str(model_path),
            "ref_model": str(ref_path) if job["ref"] else None,
            "forget_tasks": forget_tasks, "unlearned_tasks": unlearned_tasks, "split": cfg.data.split,
            "n_forget": job["n_forget"], "n_retain": job["n_retain"], "settings": config_to_dict(settings),
            "trainable_tensors": job["n_trainable"], "seed": train.seed, "log_history": trainer.state.log_history,
        }

    return train_job(out_dir, f"[unlearn] {method_name}", build, finish, train.merge_lora, identity)


def _job(cfg: RunConfig, resolved: ResolvedMethod, model_path, ref_path, forget_tasks, unlearned_tasks) -> dict:
    """What makes an unlearned model: the method and every setting that changes its weights (seed
    included), the data, and the start and reference models (by folder name: a run directory
    may move). A finished folder or checkpoint of another job is refused (``train_job``)."""
    settings = config_to_dict(resolved.settings)
    settings["train"] = {k: v for k, v in result_train_options(settings["train"]).items() if k != "save_every_epoch"}
    return {"method": resolved.settings.method, "settings": settings, "split": cfg.data.split,
            "forget_tasks": [str(t) for t in forget_tasks], "unlearned_tasks": [str(t) for t in unlearned_tasks],
            "start_model": Path(str(model_path)).name, "reference_model": Path(str(ref_path)).name if ref_path else None}


def _description(n_forget: int, n_retain: int, settings, ref, n_trainable: int | None) -> str:
    """The job's log line: data, schedule, coefficients and how the reference model is held."""
    train = settings.train
    held = ("not needed" if ref is None else "the base model, LoRA adapter disabled"
            if isinstance(ref, BaseModelReference) else "loaded")
    return (f"{n_forget} forget / {n_retain} retain QA, {train.epochs:g} epochs, lr {train.lr:g}, "
            f"forget_coeff {settings.forget_coeff:g}, reg_coeff {settings.reg_coeff:g}, ref model {held}"
            + (f", {n_trainable} trainable tensors ({settings.trainable!r})" if n_trainable else ""))


def _keep_epoch_snapshots(folder: ModelFolder) -> None:
    """Hard-link the per-epoch snapshots (``train.save_every_epoch``) into the finished model
    folder; ``train_job`` removes the originals once the manifest is written, so a crash before
    it keeps them for the rerun (which saves the model folder afresh)."""
    epochs_tmp = folder.epochs_tmp / "epochs"
    if epochs_tmp.is_dir():
        shutil.rmtree(folder.path / "epochs", ignore_errors=True)
        shutil.copytree(epochs_tmp, folder.path / "epochs", copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def _reference(model, lora: bool, ref_path, model_path, cfg: RunConfig):
    """The frozen reference: under LoRA with the starting model as reference, the policy's own
    base (adapter disabled, no second copy); otherwise a separately loaded model."""
    ref_path = resolve_model(str(ref_path), cfg.model.cache_dir)
    if lora and str(ref_path) == str(model_path):
        return BaseModelReference(model)
    return load_model(ref_path, cfg.model.trust_remote_code)
