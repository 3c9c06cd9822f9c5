"""kluekit's CoSENT equals sentence-transformers' CoSENTLoss (value and gradient) and by hand on a tiny batch."""

from __future__ import annotations

import math

import pytest
import torch

from kluekit.embedding.losses import CoSENT, make_loss


def library_cosent():
    try:
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers.losses import CoSENTLoss
    return CoSENTLoss(model=torch.nn.Identity())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sentence_transformers(seed):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(16, 8, generator=generator, requires_grad=True)
    b = torch.randn(16, 8, generator=generator, requires_grad=True)
    labels = torch.randint(0, 6, (16,), generator=generator).float() / 5  # ties included
    ours = CoSENT().compute_loss_from_embeddings([a, b], labels)
    grad_ours = torch.autograd.grad(ours, [a, b])
    theirs = library_cosent().compute_loss_from_embeddings([a, b], labels)
    grad_theirs = torch.autograd.grad(theirs, [a, b])
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-5)
    for mine, reference in zip(grad_ours, grad_theirs):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5)


def test_by_hand_and_through_make_loss():
    # cosines 1, 0 and -1 (scores 20, 0, -20) for gold 0.2, 0.6, 1.0: every lower-labelled pair scores higher
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0.2, 0.6, 1.0])
    expected = math.log(1 + math.exp(20 - 0) + math.exp(20 + 20) + math.exp(0 + 20))
    loss = make_loss(None, "cosent").compute_loss_from_embeddings([a, b], labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    same = torch.tensor([0.5, 0.5, 0.5])  # no ordered pair: log(1) = 0
    assert make_loss(None, "cosent").compute_loss_from_embeddings([a, b], same).item() == 0.0
