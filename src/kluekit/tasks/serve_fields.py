"""Pieces the tasks' serve specs (``Task.serve_spec``) share: bounded text fields and label answers.

Imported only when a task is served (pydantic comes with FastAPI), so the task modules stay light::

    Text = text_field(1000, "the sentence", "오늘 날씨가 좋다")   # 1-1000 characters, not blank
    class Item(BaseModel):
        sentence: Text
"""

from __future__ import annotations

import re
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, Field


SURROGATE = re.compile("[\ud800-\udfff]")


def _usable(text: str) -> str:
    """Not blank, and no unpaired surrogate (the JSON escape ``"\\ud800"``: not UTF-8 text; tokenizers fail on it)."""
    if not text.strip():
        raise ValueError("the text is empty")
    if found := SURROGATE.search(text):
        raise ValueError(f"the text holds an unpaired surrogate (\\u{ord(found.group()):04x} at character "
                         f"{found.start()}), which is not Unicode text; send valid UTF-8")
    return text


def text_field(limit: int, description: str, example: str | None = None):
    """A string of 1 to ``limit`` characters that is not only whitespace (the limit shows in the OpenAPI schema)."""
    return Annotated[str, Field(min_length=1, max_length=limit, description=f"{description} (1 to {limit} characters)",
                                examples=[example] if example else None), AfterValidator(_usable)]


class LabelResult(BaseModel):
    """The predicted label of one item and the probability of every label."""

    label: str = Field(description="the most probable label")
    probability: float = Field(description="its probability (0-1)")
    probabilities: dict[str, float] = Field(description="every label's probability, in the model's label order")


def label_results(labels: list[str], probs: np.ndarray) -> list[dict]:
    """One ``LabelResult`` dict per row of (n, C) class probabilities."""
    best = probs.argmax(axis=1)
    return [{"label": labels[b], "probability": round(float(row[b]), 6),
             "probabilities": {name: round(float(p), 6) for name, p in zip(labels, row)}}
            for b, row in zip(best, probs)]


def request_frame(columns: dict[str, list], **attrs) -> pd.DataFrame:
    """An examples DataFrame for request items: ``id`` (item index), the given columns and ``_row`` (1-based)."""
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({"id": [str(i) for i in range(n)], **columns})
    frame["_row"] = np.arange(1, n + 1)
    frame.attrs.update(path="request", **attrs)
    return frame
