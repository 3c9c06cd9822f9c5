"""Batch orders (length-grouped shuffled batches for training, length-sorted batches for inference) and padding."""

from __future__ import annotations

import itertools

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


class PadCollator:
    """The batches of transformers' ``DataCollatorWithPadding`` (``tokenizer.pad``: token ids, attention mask, token
    types and special-tokens mask padded to the longest item, rounded up to ``pad_to_multiple_of``, on the
    tokenizer's padding side; ``label`` / ``label_ids`` renamed ``labels``; other values stacked as they are), built
    with numpy in one copy per column instead of per-item Python lists: ``tokenizer.pad`` took about 2 ms for 32
    sentence pairs, on the training loop's thread (``benchmarks/loop_profile.py``)."""

    RENAMED = {"label": "labels", "label_ids": "labels"}

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        self.ids = tokenizer.model_input_names[0]
        self.fill = {self.ids: tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id,
                     "attention_mask": 0, "special_tokens_mask": 1}
        self.mask = "attention_mask" in tokenizer.model_input_names
        self.left, self.multiple = tokenizer.padding_side == "left", pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict:
        if self.fill[self.ids] is None:
            from .errors import KluekitError

            raise KluekitError("the tokenizer has no padding token, so batches cannot be padded; give it one "
                               "(tokenizer.pad_token) before training")
        lengths = np.fromiter((len(item[self.ids]) for item in items), dtype=np.int64, count=len(items))
        width = int(lengths.max()) if len(items) else 0
        if self.multiple and width % self.multiple:
            width += self.multiple - width % self.multiple
        columns = np.arange(width)
        filled = columns >= width - lengths[:, None] if self.left else columns < lengths[:, None]
        names = list(items[0])
        if self.mask and "attention_mask" not in names:
            names.append("attention_mask")
        batch = {}
        for name in names:
            if name not in self.fill:
                values = [item[name] for item in items]
                batch[self.RENAMED.get(name, name)] = torch.from_numpy(np.array(values)) \
                    if isinstance(values[0], np.ndarray) else torch.tensor(values)
                continue
            out = np.full((len(items), width), self.fill[name], dtype=np.int64)
            if name == "attention_mask" and name not in items[0]:
                out[filled] = 1
            else:
                out[filled] = np.fromiter(itertools.chain.from_iterable(item[name] for item in items),
                                          dtype=np.int64, count=int(lengths.sum()))
            batch[name] = torch.from_numpy(out)
        return batch
