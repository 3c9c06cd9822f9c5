"""``--split-seed``: the rows ``--dev-split`` holds out follow it (default: ``--seed``), so several training seeds can
share one split."""

from __future__ import annotations

import pandas as pd

from kluekit.config import TrainConfig
from kluekit.tasks import get_task_class
from kluekit.training import split_off


def held(seed: int, split_seed: int = 0) -> list[str]:
    examples = pd.DataFrame({"sentence1": [f"a{i}" for i in range(50)], "sentence2": [f"b{i}" for i in range(50)],
                             "label": [i / 10 for i in range(50)]})
    cfg = TrainConfig(train=["x"], dev_split=0.2, seed=seed, split_seed=split_seed)
    return split_off(get_task_class("sts")(), examples, cfg, has_dev=False)[1]["sentence1"].tolist()


def test_split_seed_picks_the_held_out_rows():
    assert len(held(1)) == 10
    assert held(1) != held(2)  # by default each seed holds out its own rows
    assert held(2, split_seed=1) == held(1) == held(1, split_seed=1)
    assert held(7, split_seed=2) == held(2)


def test_split_seed_needs_dev_split(tmp_path, sts_train_csv):
    import pytest

    from kluekit.errors import KluekitError
    from kluekit.training import check_split_seed

    with pytest.raises(KluekitError, match="--split-seed picks the rows --dev-split holds out"):
        check_split_seed(TrainConfig(train=[str(sts_train_csv)], split_seed=3))
    check_split_seed(TrainConfig(train=[str(sts_train_csv)], split_seed=3, dev_split=0.1))
