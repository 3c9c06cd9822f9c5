"""Batch orders: length-grouped shuffled batches for training, length-sorted batches for inference."""

from __future__ import annotations

import numpy as np
import torch


def train_batches(lengths, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                  group: bool = True, rank: int = 0, world: int = 1, group_size: int = 64) -> list[list[int]]:
    """Batches of indices for one epoch, the same for the same (seed, epoch).

    With ``group``, the shuffled order is cut into windows of ``group_size`` batches, each window is
    sorted by length and cut into batches, and the batches are shuffled again: little padding, yet
    random batches. With several processes, each takes every ``world``-th batch (equal counts).
    """
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    if group:
        window = batch_size * group_size
        order = np.concatenate([chunk[np.argsort(-lengths[chunk], kind="stable")]
                                for chunk in np.array_split(order, max(1, -(-len(order) // window)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [b.tolist() for b in shard(batches, rank, world)]


def shard(batches: list, rank: int, world: int) -> list:
    """This process's share of an epoch's batches: every ``world``-th from ``rank``, the same count for all."""
    usable = len(batches) - len(batches) % world if world > 1 else len(batches)
    return batches[rank:usable:world]


def sorted_batches(lengths, batch_size: int) -> list[list[int]]:
    """Inference batches of similar lengths, longest first (so memory problems show up at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


class Features(torch.utils.data.Dataset):
    """A dataset view over ``dict[str, list]`` features: item i is ``{name: values[i]}``; ``lengths`` are the
    tokens of each item (summed over its texts where there are several ``<prefix>input_ids`` columns)."""

    def __init__(self, features: dict[str, list]):
        self.features = features
        columns = [values for name, values in features.items() if name.endswith("input_ids")]
        self.lengths = sum(np.fromiter((len(ids) for ids in values), dtype=np.int64, count=len(values))
                           for values in columns)

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return {name: values[index] for name, values in self.features.items()}


def ragged(arrays) -> np.ndarray:
    """A 1-D object array holding ``arrays`` (of different lengths) as they are; numpy would otherwise
    try to stack arrays that happen to share a shape."""
    arrays = list(arrays)
    out = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        out[i] = array
    return out
