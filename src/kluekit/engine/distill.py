"""Knowledge distillation (Hinton et al. 2015): the model also learns the predictions of trained teachers.

``--teacher RUN [RUN ...]`` names kluekit runs of the same task and labels (e.g. the seeds of an ensemble, or a
larger model). Before the first step they predict every training item once; their mean prediction becomes each
item's soft target, and a step's loss mixes the task's own loss with how far the model is from that target::

    loss = (1 - weight) * task_loss + weight * distance(outputs, teacher)

For class probabilities the distance is the KL divergence of the teacher's distribution from the model's, both
softened by ``temperature`` and scaled by its square (as Hinton et al.); for a single score (regression) the
squared difference. ``DistillStep`` wraps a task for the trainer (inside ``RDropStep`` where both are on);
evaluation and prediction use the task itself, so a distilled model is one ordinary model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TARGETS = "teacher_targets"  # the batch key of the teachers' predictions (log-probabilities, or scores)


def strip(batch: dict) -> dict:
    """The batch without the teachers' predictions: what the task's own forward and loss see."""
    return {name: value for name, value in batch.items() if name != TARGETS}


def distance(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """How far the model's ``logits`` (n, C) are from the teachers' ``targets``: for C > 1, targets are
    log-probabilities and the distance is ``T^2 * KL(teacher_T || model_T)`` (batch mean, distributions
    softened by T); for C = 1, targets are scores and the distance is the mean squared difference."""
    logits, targets = logits.float(), targets.float()
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.reshape(-1), targets.reshape(-1))
    student = F.log_softmax(logits / temperature, dim=-1)
    teacher = F.log_softmax(targets / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature ** 2


class DistillStep:
    """The training step of ``task`` with the teachers' term mixed in with ``weight`` (0 < weight <= 1)."""

    def __init__(self, task, weight: float, temperature: float):
        self.task, self.weight, self.temperature = task, weight, temperature
        self.cuda_graphs = getattr(task, "cuda_graphs", True)

    def forward(self, model, batch: dict):
        return self.task.forward(model, strip(batch))

    def loss(self, outputs, batch: dict):
        own = self.task.loss(outputs, strip(batch)) if self.weight < 1 else 0.0
        taught = distance(outputs.logits, batch[TARGETS], self.temperature)
        return (1 - self.weight) * own + self.weight * taught

    def consistency(self, first, second, batch: dict):
        return self.task.consistency(first, second, strip(batch))
