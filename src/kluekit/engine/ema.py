"""An exponential moving average (EMA) of a model's trainable weights, for evaluating and saving.

Averaging the weights of the last few hundred steps smooths out the noise of the last updates; the average is
often scored a little higher than the raw weights and varies less from seed to seed. The trainer updates it after
every optimizer step and swaps it into the model to evaluate and save (``applied``); training goes on with the
raw weights. The average is kept in fp32 on the weights' device and updated with one foreach op over all tensors::

    ema = EMA(model.parameters(), decay=0.999)
    ...; optimizer.step(); ema.update()
    with ema.applied():
        evaluate(model)

The decay ramps up over the first updates, ``min(decay, (1 + n) / (10 + n))`` at update ``n`` (as TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``): a fine-tuning run of a few hundred steps would otherwise keep
most of the starting weights (a fresh head's random ones among them) in the average.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from ..errors import KluekitError

log = logging.getLogger("kluekit")


class EMA:
    """The moving average of ``params`` (those that require gradients) with ``decay`` (0 < decay < 1)."""

    def __init__(self, params, decay: float):
        self.params = [param for param in params if param.requires_grad]
        self.decay, self.updates = decay, 0
        self.shadow = [param.detach().float().clone() for param in self.params]

    def current_decay(self) -> float:
        """The decay of the next update: ``decay``, lower over the first updates (module docstring)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """``shadow = decay * shadow + (1 - decay) * weight`` for every tensor, on the device, no host sync."""
        weights = [param.detach().float() for param in self.params]  # the tensors themselves when already fp32
        torch._foreach_lerp_(self.shadow, weights, 1.0 - self.current_decay())
        self.updates += 1

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average again from the current weights (a resume from a checkpoint saved without one)."""
        torch._foreach_copy_(self.shadow, [param.detach().float() for param in self.params])
        self.updates = 0

    @contextlib.contextmanager
    def applied(self):
        """The average copied into the model's own weight tensors for the ``with`` block, the raw weights copied
        back after. Values are copied, never storages swapped, so CUDA graphs that read the weights in place
        stay valid."""
        with torch.no_grad():
            raw = [param.detach().clone() for param in self.params]
            torch._foreach_copy_(self.params, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": list(self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a saved average (the same trainable tensors, in the same order)."""
        shadow = state["shadow"]
        if len(shadow) != len(self.shadow) or any(a.shape != b.shape for a, b in zip(shadow, self.shadow)):
            raise KluekitError("--resume: the checkpoint's weight average (--ema-decay) does not match this model's "
                               "trainable weights")
        torch._foreach_copy_(self.shadow, [saved.to(mine.device) for saved, mine in zip(shadow, self.shadow)])
        self.updates = int(state["updates"])
        if state["decay"] != self.decay:
            log.warning("--ema-decay %g, the checkpoint's average was kept with %g: going on with %g",
                        self.decay, state["decay"], self.decay)
