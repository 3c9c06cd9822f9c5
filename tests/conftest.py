"""Shared fixtures: paths to ../shared (read in place, never copied) and a tiny model built on the fly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny_model.py

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
STS_DIR = SHARED / "data" / "klue_sts"


def shared_path(*parts: str) -> Path:
    """A file under ../shared; skips the test when ../shared is absent (fails instead under CI)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("KLUEKIT_REQUIRE_SHARED"):
            pytest.fail(f"{path} not found, and KLUEKIT_REQUIRE_SHARED is set (CI must not skip)")
        pytest.skip(f"../shared not found: {path} (the shared data sits beside the checkout)")
    return path


@pytest.fixture(scope="session")
def sts_train_csv() -> Path:
    return shared_path("data", "klue_sts", "klue_sts_train.csv")


@pytest.fixture(scope="session")
def sts_dev_json() -> Path:
    return shared_path("data", "klue_sts", "klue-sts-v1.1_dev.json")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, sts_train_csv) -> Path:
    """WordPiece (1000 pieces) trained on KLUE-STS train text + a random 2-layer BERT (hidden 64)."""
    from tiny_model import build_tiny_model, sts_texts

    return build_tiny_model(sts_texts(sts_train_csv), tmp_path_factory.mktemp("tiny") / "model",
                            vocab_size=1000, dropout=0.0)


@pytest.fixture(scope="session")
def tiny_biencoder(tmp_path_factory, tiny_model) -> Path:
    """The tiny BERT as a sentence-transformers bi-encoder (Transformer + mean pooling), saved with ``.save``."""
    from tiny_model import build_tiny_biencoder

    return build_tiny_biencoder(tiny_model, tmp_path_factory.mktemp("tiny") / "biencoder")
