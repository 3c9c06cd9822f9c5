"""The bi-encoder's losses: sentence-transformers' (their import path moved in 5.4), and CoSENT written so that a
CUDA graph can capture it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class CoSENT:
    """CoSENT as sentence-transformers' ``CoSENTLoss`` computes it (cosine x ``scale``; every pair whose gold score
    is lower than another's is asked for a lower cosine: log(1 + sum exp(s_low - s_high))), without a CPU tensor in
    the step: sentence-transformers <= 6.0 builds one every step (``torch.zeros(1).to(device)``), so CUDA-graph
    capture failed and the bi-encoder trained eagerly."""

    def __init__(self, scale: float = 20.0):
        self.scale = scale

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        scores = F.cosine_similarity(embeddings[0].float(), embeddings[1].float(), dim=-1) * self.scale
        labels = labels.view(-1)
        gaps = scores[:, None] - scores[None, :]  # s_i - s_j, counted where label_i < label_j
        gaps = gaps.masked_fill(labels[:, None] >= labels[None, :], float("-inf"))
        return torch.logsumexp(torch.cat((gaps.new_zeros(1), gaps.flatten())), dim=0)


def make_loss(model, name: str):
    """A loss for ``model`` with ``compute_loss_from_embeddings``: ``cosent`` (ranks STS pairs within a batch;
    kluekit's, above), or sentence-transformers' ``cosine`` (MSE of cosine vs label) or ``mnrl``
    (MultipleNegativesRankingLoss: in-batch and hard negatives). The engine calls it on the embeddings the
    task's ``forward`` made."""
    if name == "cosent":
        return CoSENT()
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers import losses
    return {"cosine": losses.CosineSimilarityLoss, "mnrl": losses.MultipleNegativesRankingLoss}[name](model)
