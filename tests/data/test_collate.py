"""Dynamic padding (to the batch's longest, never to a fixed 500) and length-grouped order."""
from __future__ import annotations

import random

import pytest
import torch

from unlearnlm.data.collate import LengthGroupedSampler, QACollator, length_grouped_order, pad_batch
from unlearnlm.data.prompts import IGNORE

PAD = 0
FEATURES = [
    {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
    {"input_ids": [8, 9, 10, 11, 12], "labels": [IGNORE, IGNORE, 10, 11, 12]},
    {"input_ids": [13], "labels": [13]},
]


def test_pad_batch_right():
    batch = pad_batch(FEATURES, PAD)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long for t in batch.values())
    assert batch["input_ids"].shape == (3, 5)  # the longest in the batch, not 500 or max_length
    assert batch["input_ids"].tolist() == [[5, 6, 7, PAD, PAD], [8, 9, 10, 11, 12], [13, PAD, PAD, PAD, PAD]]
    assert batch["labels"].tolist() == [
        [IGNORE, 6, 7, IGNORE, IGNORE], [IGNORE, IGNORE, 10, 11, 12], [13, IGNORE, IGNORE, IGNORE, IGNORE],
    ]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_pad_batch_left():
    batch = pad_batch(FEATURES, PAD, side="left")
    assert batch["input_ids"].tolist() == [[PAD, PAD, 5, 6, 7], [8, 9, 10, 11, 12], [PAD, PAD, PAD, PAD, 13]]
    assert batch["labels"].tolist() == [
        [IGNORE, IGNORE, IGNORE, 6, 7], [IGNORE, IGNORE, 10, 11, 12], [IGNORE, IGNORE, IGNORE, IGNORE, 13],
    ]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]


def test_pad_id_equal_to_eos_is_still_ignored_in_labels():
    # SmolLM2 pads with its EOS id: padding must be told apart by the mask and -100 labels.
    eos = 2
    batch = pad_batch([{"input_ids": [4, eos], "labels": [4, eos]}, {"input_ids": [4, 4, 4, eos]}], pad_id=eos)
    assert batch["input_ids"][0].tolist() == [4, eos, eos, eos]
    assert batch["labels"][0].tolist() == [4, eos, IGNORE, IGNORE]
    assert batch["attention_mask"][0].tolist() == [1, 1, 0, 0]
    assert batch["labels"][1].tolist() == [4, 4, 4, eos]  # no labels given: input_ids are the labels


def test_pad_batch_single_and_equal_lengths():
    batch = pad_batch([{"input_ids": [1, 2], "labels": [1, 2]}] * 2, PAD)
    assert batch["input_ids"].shape == (2, 2)
    assert batch["attention_mask"].all()


def test_collator_pads_dynamically():
    batch = QACollator(PAD)(FEATURES[:1])
    assert batch["input_ids"].shape == (1, 3)


# --------------------------------------------------------------------------- length grouping
def _lengths(n: int = 1000, seed: int = 123) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 300) for _ in range(n)]


def _mean_padding(order: list[int], lengths: list[int], batch_size: int) -> float:
    pads = []
    for i in range(0, len(order), batch_size):
        batch = [lengths[j] for j in order[i : i + batch_size]]
        pads.append(sum(max(batch) - n for n in batch))
    return sum(pads) / len(pads)


@pytest.mark.parametrize("n, batch_size", [(1000, 8), (37, 4), (1, 3), (0, 2)])
def test_length_grouped_order_is_a_permutation(n, batch_size):
    order = length_grouped_order(_lengths(n), batch_size, seed=0)
    assert sorted(order) == list(range(n))


def test_length_grouped_order_deterministic_per_seed():
    lengths = _lengths()
    a = length_grouped_order(lengths, 8, seed=1)
    assert a == length_grouped_order(lengths, 8, seed=1)
    assert a != length_grouped_order(lengths, 8, seed=2)


def test_length_grouped_order_reduces_padding():
    lengths, batch_size = _lengths(), 8
    grouped = _mean_padding(length_grouped_order(lengths, batch_size, seed=0), lengths, batch_size)
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    shuffled = _mean_padding(order, lengths, batch_size)
    assert grouped < shuffled / 4  # sorted megabatches: far less padding than a random order


def test_length_grouped_batches_are_not_globally_sorted():
    """Batches stay shuffled across the epoch (not longest-first everywhere)."""
    lengths = _lengths()
    order = length_grouped_order(lengths, 8, seed=0)
    firsts = [lengths[order[i]] for i in range(0, len(order), 8)]
    assert firsts != sorted(firsts, reverse=True)


def test_sampler_new_order_each_epoch():
    lengths = _lengths(200)
    sampler = LengthGroupedSampler(lengths, batch_size=4, seed=3)
    assert len(sampler) == 200
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(200))
    assert first != second
    sampler.set_epoch(0)
    assert list(sampler) == first
