"""LoRA: an adapter on every Linear layer, and the frozen base as the reference model.

    model = with_lora(model, train)          # peft adapter, target_modules="all-linear"
    ref = BaseModelReference(model)          # the reference of NPO, DPO, KL, ...: no second copy

A method that needs a reference (the model before unlearning) gets, under LoRA, the policy's
own base weights with the adapter switched off (peft's ``disable_adapter``), so it holds no
extra weights. docs/method.md, section 5 ("LoRA").
"""
from __future__ import annotations

import contextlib

import torch


def with_lora(model, train):
    """``model`` wrapped in a peft LoRA adapter with the settings of ``train`` (TrainConfig). The
    adapter's random initialisation is drawn from ``train.seed``: the same in every run and in
    every process (FSDP keeps each process's own shard of it)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        return get_peft_model(model, config)


class BaseModelReference:
    """A peft model's base, used as a frozen reference model: every call runs the model with its
    adapter disabled, in eval mode and without gradient, then restores both.

    It answers what ``LossContext`` asks of a reference: a forward (``__call__``), the output
    head (``get_output_embeddings``, for the chunked loss) and ``config``."""

    def __init__(self, peft_model):
        self.model = peft_model
        self.config = peft_model.config

    @contextlib.contextmanager
    def _base(self):
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.model.disable_adapter():
                yield
        finally:
            self.model.train(was_training)

    def __call__(self, **inputs):
        with self._base():
            return self.model(**inputs)

    def get_output_embeddings(self):
        head = self.model.get_output_embeddings()

        def base_head(hidden):
            with self._base():
                return head(hidden)

        return base_head


def merged_model(peft_model, adapter_dir):
    """The base model with the adapter merged in (peft's ``merge_and_unload``). Sharded weights
    (FSDP) cannot be merged by one process, so then the base is loaded again from its folder and
    the adapter just saved in ``adapter_dir`` is merged into it."""
    from unlearnlm.training.fsdp import sharded_count

    if not sharded_count(peft_model)[0]:
        return peft_model.merge_and_unload()
    from peft import PeftModel

    from unlearnlm.models.loading import load_model

    base = load_model(peft_model.peft_config[peft_model.active_adapter].base_model_name_or_path)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
