"""A cross-encoder STS run (``kluekit train sts``) scoring sentence pairs on 0-5, to rerank bi-encoder results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import KluekitError


class CrossEncoderScorer:
    """Scores pairs with a trained STS run directory: ``scorer([("a", "b")]) -> array([3.2])`` (0-5).

    Slower than the bi-encoder (one forward pass per pair) but more accurate; the server runs it on the
    model thread, so calls never overlap with encoding.
    """

    def __init__(self, run_dir: str, max_length: int = 0, batch_size: int = 64, runtime: str = "torch"):
        from ..modeling import read_run_info, run_task
        from ..inference import load_predictor

        if not Path(run_dir).is_dir():
            raise KluekitError(f"--cross-encoder: no such directory {run_dir!r}")
        info = read_run_info(run_dir)
        task = run_task(info)
        if task.name != "sts":
            raise KluekitError(f"--cross-encoder: {run_dir} was trained for {task.name!r}; "
                               "it must be a 'kluekit train sts' run")
        self.tokenizer, self.model, self.device, _ = load_predictor(task, run_dir, "fp32", runtime)
        self.task, self.run_dir, self.batch_size = task, str(run_dir), batch_size
        self.max_length = max_length or int(info.get("train_config", {}).get("max_length") or 128)

    def __call__(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """STS scores (float64, clipped to 0-5), one per pair, in order."""
        from ..inference import predict_logits

        frame = pd.DataFrame({"sentence1": [a for a, _ in pairs], "sentence2": [b for _, b in pairs],
                              "label": np.nan})
        features = self.task.encode(frame, self.tokenizer, self.max_length)
        logits = predict_logits(self.model, self.tokenizer, features, self.batch_size, self.device, progress=False)
        return self.task.outputs(logits, features)
