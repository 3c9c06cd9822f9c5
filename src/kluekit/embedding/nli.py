"""The NLI stage of ``kluekit train biencoder``: (premise, entailment, contradiction) triplets trained with
sentence-transformers' MultipleNegativesRankingLoss before the STS stage (the SBERT / KoSentenceBERT recipe).

Each premise must score its entailed hypothesis above every other hypothesis of the batch: the other
triplets' entailments and contradictions (in-batch negatives) and its own contradiction (the hard
negative). A text twice in one batch would be a "negative" equal to a positive, so batches never hold
the same text twice (``distinct_batches``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..batching import Features, shard
from ..data.io import file_sha256
from ..data.nli_pairs import nli_triplets, read_nli
from ..engine import Stage, TrainData
from ..errors import KluekitError
from .columns import ColumnCollator, embed_columns, encode_columns

Triplet = tuple[str, str, str]


def read_triplets(paths: list[str]) -> tuple[list[Triplet], list[dict]]:
    """Triplets of all NLI files (concatenated, in file order) and one record per file: path, sha256,
    rows, triplets, premises skipped. Raises KluekitError when no file gives a triplet."""
    triplets, records = [], []
    for path in paths:
        found, counts = nli_triplets(read_nli(path))
        triplets += found
        records.append({"path": str(path), "sha256": file_sha256(path), **counts})
    if paths and not triplets:
        raise KluekitError(f"--nli: no premise in {', '.join(map(str, paths))} has both an entailment and a "
                           "contradiction hypothesis; the NLI stage needs (premise, entailment, contradiction) triplets")
    return triplets, records


def distinct_batches(rows: list[tuple[str, ...]], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of row indices, the same for the same (seed, epoch), no text twice in a batch.

    Rows are taken in a shuffled order; a row sharing a text with the batch being filled waits for the
    next batch (and is tried first there). Every row is used once per epoch.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(rows)).tolist()
    batches, waiting, taken = [], [], 0
    while taken < len(order) or waiting:
        batch, texts, still = [], set(), []
        for i in waiting:
            if len(batch) < batch_size and texts.isdisjoint(rows[i]):
                batch.append(i)
                texts.update(rows[i])
            else:
                still.append(i)
        while len(batch) < batch_size and taken < len(order):
            i, taken = order[taken], taken + 1
            if texts.isdisjoint(rows[i]):
                batch.append(i)
                texts.update(rows[i])
            else:
                still.append(i)
        batches.append(batch)
        waiting = still
    return batches


class TripletStep:
    """forward/loss of the NLI stage: embeddings of the three columns, MultipleNegativesRankingLoss."""

    def __init__(self, loss):
        self.ranking = loss

    def forward(self, model, batch):
        return embed_columns(model, batch)

    def loss(self, outputs, batch):
        return self.ranking.compute_loss_from_embeddings(outputs, None)


def nli_stage(model, tokenizer, cfg, options, triplets: list[Triplet], max_length: int) -> Stage:
    """The NLI stage: ``options.nli_epochs`` epochs of ``distinct_batches`` of ``options.nli_batch_size``
    triplets (each text with ``options.prompt`` before it), MultipleNegativesRankingLoss at
    ``options.nli_learning_rate``; the other run options (warmup, weight decay, precision) as for STS."""
    from .losses import make_loss

    prompt = options.prompt or ""
    columns = [[prompt + triplet[column] for triplet in triplets] for column in range(3)]
    dataset = Features(encode_columns(tokenizer, columns, max_length))

    def plan(epoch: int, rank: int, world: int) -> list[list[int]]:
        return shard(distinct_batches(triplets, options.nli_batch_size, cfg.seed, epoch), rank, world)

    stage_cfg = dataclasses.replace(cfg, epochs=options.nli_epochs, batch_size=options.nli_batch_size,
                                    learning_rate=options.nli_learning_rate, max_steps=0, eval_steps=0)
    data = TrainData(dataset, plan, ColumnCollator(tokenizer), tokenizer.pad_token_id or 0)
    return Stage("nli", TripletStep(make_loss(model, "mnrl")), data, stage_cfg)
