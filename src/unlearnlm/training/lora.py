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
    """``model`` wrapped in a peft LoRA adapter with the settings of ``train`` (TrainConfig)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
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
