"""R-Drop (Liang et al. 2021): each batch goes through the model twice, with different dropout, and the loss adds
how far the two outputs are apart, so that the model's answer depends less on which units dropout removed::

    loss = (task_loss(a) + task_loss(b)) / 2 + alpha * task.consistency(a, b, batch)

``RDropStep`` wraps a task (any step with ``forward``/``loss``/``consistency``) for the trainer; evaluation and
prediction use the task itself (one pass, dropout off). It doubles the work of a training step.
"""

from __future__ import annotations


class RDropStep:
    """The training step of ``task`` with R-Drop's consistency term weighted by ``alpha`` (> 0)."""

    def __init__(self, task, alpha: float):
        self.task, self.alpha = task, alpha
        self.cuda_graphs = getattr(task, "cuda_graphs", True)

    def forward(self, model, batch: dict):
        return self.task.forward(model, batch), self.task.forward(model, batch)

    def loss(self, outputs, batch: dict):
        first, second = outputs
        task_loss = (self.task.loss(first, batch) + self.task.loss(second, batch)) / 2
        return task_loss + self.alpha * self.task.consistency(first, second, batch)
