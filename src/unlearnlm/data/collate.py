"""Dynamic padding and length-grouped batching: pad to the batch's longest, never to 500."""
from __future__ import annotations

import random
from typing import Sequence

import torch

from unlearnlm.data.prompts import IGNORE


def pad_batch(features: Sequence[dict], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Stack ``input_ids``/``labels`` lists into tensors padded to the longest in the batch."""
    width = max(len(f["input_ids"]) for f in features)
    ids, labels, mask = [], [], []
    for f in features:
        n = len(f["input_ids"])
        pad = width - n
        lab = f.get("labels", f["input_ids"])
        if side == "right":
            ids.append(list(f["input_ids"]) + [pad_id] * pad)
            labels.append(list(lab) + [IGNORE] * pad)
            mask.append([1] * n + [0] * pad)
        else:
            ids.append([pad_id] * pad + list(f["input_ids"]))
            labels.append([IGNORE] * pad + list(lab))
            mask.append([0] * pad + [1] * n)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


class QACollator:
    """Trainer collator for plain fine-tuning examples."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        return pad_batch(features, self.pad_id)


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int, mega: int = 50) -> list[int]:
    """A shuffled order whose consecutive ``batch_size`` chunks hold similar lengths.

    Shuffle, cut into megabatches of ``mega`` batches, sort each megabatch by length: batches
    stay random across the epoch but padding inside a batch is small (HF's LengthGroupedSampler idea).
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    size = batch_size * mega
    out: list[int] = []
    for i in range(0, len(order), size):
        chunk = sorted(order[i : i + size], key=lambda j: -lengths[j])
        batches = [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        out.extend(j for b in batches for j in b)
    return out


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Sampler over ``length_grouped_order``; a new order each epoch (seed + epoch)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = length_grouped_order(self.lengths, self.batch_size, self.seed + self.epoch)
        self.epoch += 1
        return iter(order)

    def __len__(self) -> int:
        return len(self.lengths)
