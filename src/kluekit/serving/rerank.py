"""A cross-encoder STS run (``kluekit train sts``) scoring sentence pairs on 0-5, to rerank bi-encoder results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import KluekitError


CROSS_ENCODER_TASK = "sts"  # the task whose runs score a pair on 0-5


def check_cross_encoder(run_dir: str) -> None:
    """KluekitError unless ``run_dir`` is a run directory of a ``kluekit train sts`` run."""
    from ..rundir import RunDir

    if not Path(run_dir).is_dir():
        raise KluekitError(f"--cross-encoder: no such directory {run_dir!r}")
    trained_for = RunDir.open(run_dir, option="--cross-encoder").task_name
    if trained_for != CROSS_ENCODER_TASK:
        raise KluekitError(f"--cross-encoder: {run_dir} is a {trained_for!r} run; "
                           f"it must be a 'kluekit train {CROSS_ENCODER_TASK}' run directory")


class CrossEncoderScorer:
    """Scores pairs with a trained STS run directory: ``scorer([("a", "b")]) -> array([3.2])`` (0-5).

    Slower than the bi-encoder (one forward pass per pair) but more accurate; the server runs it on the
    model thread, so calls never overlap with encoding.
    """

    def __init__(self, run_dir: str, max_length: int = 0, batch_size: int = 64, runtime: str = "torch"):
        from ..predictor import Predictor

        check_cross_encoder(run_dir)
        self.predictor = Predictor(run_dir, CROSS_ENCODER_TASK, precision="fp32", runtime=runtime, batch_size=batch_size,
                                   progress=False)
        self.predictor.max_length = max_length or self.predictor.max_length
        self.tokenizer, self.model, self.device, _ = self.predictor.load()
        self.run_dir = str(run_dir)

    def __call__(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """STS scores (float64, clipped to 0-5), one per pair, in order."""
        frame = pd.DataFrame({"sentence1": [a for a, _ in pairs], "sentence2": [b for _, b in pairs],
                              "label": np.nan})
        return self.predictor.predict(frame)
