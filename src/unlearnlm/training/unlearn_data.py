"""Unlearning batches: each forget example with its paired retain example and refusals.

Only the parts the method needs are built (``Method.parts``):
  forget          forget question + forget answer (question unmasked when mask_question=False)
  forget_idk      forget question + a refusal ("I don't know")   IDK, DPO
  retain          a retain QA, random but fixed per index         GD, KL, AP
  retain_idk      the same retain question + a refusal            AP
  forget_mismatch forget question + a random retain answer        LLMU
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from unlearnlm.data.collate import pad_batch
from unlearnlm.data.prompts import PromptFormat, encode_qa


class UnlearnDataset(torch.utils.data.Dataset):
    def __init__(
        self, forget: Sequence[dict], retain: Sequence[dict], idk: Sequence[str], tokenizer,
        fmt: PromptFormat, parts: frozenset[str], mask_question: bool = True,
        max_length: int = 512, seed: int = 0,
    ):
        rng = random.Random(seed)
        needs_retain = parts & {"retain", "retain_idk", "forget_mismatch"}
        if needs_retain and not retain:
            raise ValueError("the method needs a retain set, but it is empty")
        self.items = []
        for f in forget:
            r = retain[rng.randrange(len(retain))] if retain else None
            item = {}

            def enc(question, answer, mask=True):
                return encode_qa(tokenizer, fmt, question, answer, mask, max_length)

            if "forget" in parts:
                item["forget"] = enc(f["question"], f["answer"], mask_question)
            if "forget_idk" in parts:
                item["forget_idk"] = enc(f["question"], idk[rng.randrange(len(idk))])
            if "retain" in parts:
                item["retain"] = enc(r["question"], r["answer"])
            if "retain_idk" in parts:
                item["retain_idk"] = enc(r["question"], idk[rng.randrange(len(idk))])
            if "forget_mismatch" in parts:
                item["forget_mismatch"] = enc(f["question"], retain[rng.randrange(len(retain))]["answer"])
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def lengths(self) -> list[int]:
        """Tokens per item, all parts together (for length-grouped batches)."""
        return [sum(len(p["input_ids"]) for p in item.values()) for item in self.items]


class PartsCollator:
    """Pads each part of the batch to its own longest sequence."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: Sequence[dict]) -> dict[str, dict[str, torch.Tensor]]:
        return {part: pad_batch([f[part] for f in features], self.pad_id) for part in features[0]}
