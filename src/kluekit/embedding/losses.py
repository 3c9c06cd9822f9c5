"""The bi-encoder's losses, from sentence-transformers (their import path moved in 5.4)."""

from __future__ import annotations


def make_loss(model, name: str):
    """A sentence-transformers loss on ``model``: ``cosent`` (ranks STS pairs within a batch), ``cosine``
    (MSE of cosine vs label) or ``mnrl`` (MultipleNegativesRankingLoss: in-batch and hard negatives). The
    engine calls its ``compute_loss_from_embeddings`` on the embeddings the task's ``forward`` made."""
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers import losses
    return {"cosent": losses.CoSENTLoss, "cosine": losses.CosineSimilarityLoss,
            "mnrl": losses.MultipleNegativesRankingLoss}[name](model)
