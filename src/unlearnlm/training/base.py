"""What fine-tuning and unlearning share: Trainer arguments, length-grouped batches,
real-token throughput, a NaN guard, resumable checkpoints, atomic final saves, and the job
skeleton (``train_job``) both run."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from unlearnlm.config.schema import TrainConfig
from unlearnlm.data.collate import LengthGroupedSampler
from unlearnlm.errors import ConfigError, NumericalError
from unlearnlm.io import read_json, write_json
from unlearnlm.models.compat import add_legacy_keys
from unlearnlm.models.loading import use_bf16
from unlearnlm.training.fsdp import (
    ShardingReport,
    drop_fsdp_model_pickle,
    enable_cpu_fsdp,
    is_cpu_fsdp,
    load_full_model,
    save_full_model,
)
from unlearnlm.training.layout import ModelFolder
from unlearnlm.training.lora import merged_model
from unlearnlm.training.manifest import environment_info
from unlearnlm.utils import log


# transformers 5.x renamed gradient_checkpointing to activation_checkpointing (old name warns).
_CHECKPOINTING_ARG = ("activation_checkpointing"
                      if "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}
                      else "gradient_checkpointing")


def training_arguments(train: TrainConfig, output_dir: Path, n_examples: int, **extra) -> TrainingArguments:
    """Trainer arguments from our config. Warm-up is expressed in epochs (paper: the first)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, math.ceil(n_examples / (train.batch_size * world * train.grad_accum)))
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        learning_rate=train.lr,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        weight_decay=train.weight_decay,
        warmup_steps=int(round(train.warmup_epochs * steps_per_epoch)),
        lr_scheduler_type="linear",
        optim=train.optim,
        bf16=use_bf16(train.bf16),
        use_cpu=not torch.cuda.is_available(),
        seed=train.seed,
        data_seed=train.seed,
        **{_CHECKPOINTING_ARG: train.gradient_checkpointing},
        save_strategy="epoch",  # resumable after an interruption; pruned when training ends
        save_only_model=False,
        logging_steps=1,
        report_to=[r.strip() for r in train.report_to.split(",") if r.strip()] or "none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
        ddp_backend="gloo" if not torch.cuda.is_available() and world > 1 else None,
        **extra,
    )


class ThroughputCallback(TrainerCallback):
    """Logs real (non-padding) tokens per second and the wall time."""

    def __init__(self, trainer: "UnlearnLMTrainerBase"):
        self.trainer = trainer
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()
        self.trainer.real_tokens = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.start is not None:
            elapsed = max(time.time() - self.start, 1e-9)
            logs["real_tokens_per_s"] = round(self.trainer.real_tokens / elapsed, 1)


class UnlearnLMTrainerBase(Trainer):
    """A Trainer with length-grouped batches, real-token counting and a NaN guard."""

    def __init__(self, *args, lengths: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lengths = lengths
        self.real_tokens = 0
        self.add_callback(ThroughputCallback(self))
        if is_cpu_fsdp(self):
            self.add_callback(ShardingReport())

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        enable_cpu_fsdp(self)  # FSDP on CPU processes: accelerate alone would run DDP

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if not is_cpu_fsdp(self):
            return super().save_model(output_dir, _internal_call)
        save_full_model(self, output_dir or self.args.output_dir)

    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)
        if is_cpu_fsdp(self) and self.args.should_save:  # resume reads the gathered model.safetensors
            drop_fsdp_model_pickle(output_dir)  # before trainer_state.json marks the checkpoint complete

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if not is_cpu_fsdp(self):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_full_model(self, resume_from_checkpoint)

    def _get_train_sampler(self, train_dataset=None):
        if self.lengths is None:
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedSampler(self.lengths, self.args.per_device_train_batch_size, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Fine-tuning loss (the model's own causal-LM loss), with token counting and a NaN guard."""
        self.count_tokens(inputs)
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.check_finite(out[0] if return_outputs else out)
        return out

    def count_tokens(self, inputs: dict) -> None:
        """Add the real tokens of a batch (or of each part of an unlearning batch)."""
        for value in inputs.values():
            if isinstance(value, dict):
                self.count_tokens(value)
        mask = inputs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            self.real_tokens += int(mask.sum())

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss.detach()).all():
            self._numerical_error(f"non-finite loss ({loss.item()})")

    def _get_grad_norm(self, model, grad_norm=None):
        """The global gradient norm, checked before the optimizer step: a finite loss can still
        give NaN/inf gradients, and one such update would poison the next epoch checkpoint."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        if grad_norm is not None and not math.isfinite(float(grad_norm)):
            self._numerical_error(f"non-finite gradient norm ({float(grad_norm)})")
        return grad_norm

    def _numerical_error(self, what: str) -> None:
        step = self.state.global_step + 1
        raise NumericalError(
            f"{what} at optimisation step {step}; the last good checkpoint "
            f"is kept in {self.args.output_dir}. Lower the learning rate or forget_coeff."
        )


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder (trainer_state.json written last, not
    atomically: one cut short by a kill is skipped, the previous checkpoint is used)."""
    if not output_dir.is_dir():
        return None
    found = [p for p in output_dir.glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and _readable_json(p / "trainer_state.json")]
    if not found:
        return None
    return str(max(found, key=lambda p: int(p.name.split("-")[-1])))


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def save_final(trainer: Trainer, tokenizer, out_dir: Path, merge_lora: bool = True) -> None:
    """Save a plain HF folder atomically (temp dir, then rename). ``Trainer.save_model``
    gathers ZeRO-3/FSDP shards; a LoRA adapter goes to ``adapter/`` and is merged on request."""
    folder = ModelFolder(out_dir)
    tmp = folder.tmp
    if trainer.args.should_save and tmp.exists():
        shutil.rmtree(tmp)
    trainer.save_model(str(tmp))
    if trainer.args.should_save:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "peft_config"):
            adapter = ModelFolder(tmp).adapter
            adapter.mkdir()
            for f in list(tmp.iterdir()):
                if f.is_file():
                    os.replace(f, adapter / f.name)
            if merge_lora:
                merged_model(model, adapter).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for f in tmp.glob("training_args.bin"):  # a pickle: never shipped in a model folder
            f.unlink()
        add_legacy_keys(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    trainer.accelerator.wait_for_everyone()


# build(folder, resume) -> (trainer, tokenizer, one-line description), ``resume`` the last complete
# checkpoint or None; finish(trainer, seconds) ->
# the job's manifest fields (called on the saving process only, before the manifest is written;
# other ranks return seconds and throughput).
BuildJob = Callable[[ModelFolder, str | None], tuple[Trainer, object, str]]
FinishJob = Callable[[Trainer, float], dict]


def _route_tracking_logs(trainer: Trainer, logs: Path) -> None:
    """TensorBoard writes beside the model (``<out>.logs``), not into the checkpoint folder
    that is removed when training ends (transformers 5 otherwise reads $TENSORBOARD_LOGGING_DIR)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and not os.environ.get("TENSORBOARD_LOGGING_DIR"):
            callback.logging_dir = str(logs)


JOB_FILE = "job.json"  # beside the checkpoints: the job they belong to


def refuse_another_job(where: Path, stored: dict | None, job: dict | None) -> None:
    """ConfigError naming ``where`` and the first setting in which the job that made it differs
    (a folder written before jobs were recorded, ``stored`` None, is accepted)."""
    if stored is None or job is None or stored == job:
        return
    key, was, now = _first_difference(stored, job)
    raise ConfigError(f"{where}: made by another job ({key}: {was!r} there, {now!r} now); "
                      "use another output folder or run_name, or delete it to start over")


def _first_difference(a: dict, b: dict, prefix: str = "") -> tuple[str, object, object]:
    """(dotted key, value in a, value in b) of the first key, in sorted order, where a and b differ."""
    key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
        return _first_difference(a[key], b[key], f"{prefix}{key}.")
    return f"{prefix}{key}", a.get(key), b.get(key)


def train_job(out_dir: Path, tag: str, build: BuildJob, finish: FinishJob, merge_lora: bool = True,
              job: dict | None = None) -> dict:
    """The skeleton every training job shares: reuse a finished folder; else build the trainer,
    resume from the last complete checkpoint, train, save the model atomically, write the
    manifest (last: it marks the folder finished) and drop the checkpoints. ``tag`` starts the
    log lines ("[unlearn] ME+GD"). ``job``: what makes the model (JSON); a finished folder or a
    checkpoint made by another job is refused, never reused. -> the manifest"""
    folder = ModelFolder(out_dir)
    job = json.loads(json.dumps(job)) if job is not None else None  # tuples -> lists, as stored
    if folder.is_done:
        manifest = read_json(folder.manifest)
        refuse_another_job(out_dir, manifest.get("job"), job)
        log(f"{tag}: cached at {out_dir}")
        return manifest
    resume = last_checkpoint(folder.checkpoints)
    if resume and job is not None:
        refuse_another_job(folder.checkpoints, read_json(folder.checkpoints / JOB_FILE)
                           if (folder.checkpoints / JOB_FILE).is_file() else None, job)
    if job is not None:
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
        write_json(folder.checkpoints / JOB_FILE, job)
    trainer, tokenizer, description = build(folder, resume)
    _route_tracking_logs(trainer, folder.logs)
    log(f"{tag}: {description}" + (f", resuming from {resume}" if resume else ""))
    start = time.time()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - start
    save_final(trainer, tokenizer, out_dir, merge_lora)
    tps = trainer.real_tokens / max(seconds, 1e-9)
    manifest: dict = {"seconds": round(seconds, 1), "real_tokens_per_s": round(tps, 1)}  # every rank
    if trainer.args.should_save:
        manifest = finish(trainer, seconds) | manifest | {"environment": environment_info()}
        if job is not None:
            manifest["job"] = job
        write_json(folder.manifest, manifest)
        from unlearnlm.reports.model_card import write_model_card  # reports sit above training

        write_model_card(out_dir)
        shutil.rmtree(folder.checkpoints, ignore_errors=True)
        shutil.rmtree(folder.epochs_tmp, ignore_errors=True)  # per-epoch snapshots, linked into the folder
        log(f"{tag}: done in {seconds:.0f}s, {tps:.0f} real tokens/s -> {out_dir}")
    return manifest
