"""Multi-sample dropout (Inoue 2019, ``--multi-sample-dropout N``): in training, the model's output layer sees N
dropout draws of its input, and its output is their mean; evaluation and prediction are unchanged.

The output layer is the model's last ``nn.Linear`` with ``config.num_labels`` outputs (a classification,
regression, token or entity-pair head). The dropout next to it (the nearest sibling module before it, else after
it: BERT's ``dropout`` beside ``classifier``, RoBERTa's ``classifier.dropout`` beside ``out_proj``, the last
dropout of the entity-pair head) is set to 0 and its rate used for the N draws, so the layer's input is dropped
N times instead of once (RoBERTa's head uses its one dropout twice: the first use goes too). Nothing is added to the weights: the run saves,
loads, exports and serves as any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import KluekitError


def output_layer(model) -> tuple[nn.Linear, nn.Dropout | None]:
    """(the output layer, the dropout beside it or None); KluekitError where the model has no such head."""
    labels = getattr(getattr(model, "config", None), "num_labels", None)
    named = dict(model.named_modules())
    found = [name for name, module in named.items() if isinstance(module, nn.Linear) and module.out_features == labels]
    if not labels or not found:
        raise KluekitError("--multi-sample-dropout: this model has no classification or regression head to sample "
                           "(a layer with config.num_labels outputs); train without it")
    linear = named[found[-1]]
    siblings = list(named[found[-1].rpartition(".")[0]].children())
    at = next(i for i, child in enumerate(siblings) if child is linear)
    before = [child for child in siblings[:at] if isinstance(child, nn.Dropout)]
    after = [child for child in siblings[at:] if isinstance(child, nn.Dropout)]
    return linear, (before[-1:] or after[:1] or [None])[0]


def averaged_output(linear: nn.Linear, inputs: torch.Tensor, rate: float, samples: int) -> torch.Tensor:
    """The mean of ``linear`` over ``samples`` dropout draws (at ``rate``) of ``inputs``."""
    return torch.stack([F.linear(F.dropout(inputs, rate, True), linear.weight, linear.bias)
                        for _ in range(samples)]).mean(0)


def add_multisample_dropout(model, samples: int, default_rate: float = 0.1):
    """Make ``model``'s output layer average ``samples`` dropout draws while training (a forward hook); the
    removable hook handle. ``default_rate`` where no dropout sits beside the layer."""
    if samples < 2:
        raise KluekitError(f"--multi-sample-dropout: {samples} draws average nothing; give 2 or more (usual 5)")
    linear, dropout = output_layer(model)
    rate = dropout.p if dropout is not None else default_rate
    if dropout is not None:
        dropout.p = 0.0  # the draws replace it

    def hook(module, args, output):
        if not module.training:
            return output
        return averaged_output(module, args[0], rate, samples)

    return linear.register_forward_hook(hook)
