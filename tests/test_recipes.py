"""``--recipe NAME``: a shipped YAML of options, applied under --config and the command line, with per-task
sections; an unknown name is one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kluekit import cli, recipes


@pytest.fixture()
def recipe_folder(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "trial.yaml").write_text("options: {weight_decay: 0.05, warmup: 0.2}\n"
                                       "tasks:\n  sts: {swap_augment: true}\n  classify: {label_smoothing: 0.1}\n")
    monkeypatch.setattr(recipes, "FOLDER", folder)
    return folder


def test_a_recipe_sets_options_under_the_command_line(recipe_folder, tiny_model, sts_train_csv, tmp_path):
    train = tmp_path / "train.csv"
    pd.read_csv(sts_train_csv).head(32).to_csv(train, index=False)
    run = tmp_path / "run"
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--output-dir", str(run),
                     "--max-steps", "1", "--max-length", "32", "--recipe", "trial", "--warmup", "0"]) == 0
    info = json.loads((run / "kluekit.json").read_text())
    assert info["train_config"]["recipe"] == "trial" and info["train_config"]["weight_decay"] == 0.05
    assert info["train_config"]["warmup"] == 0  # the command line wins
    assert info["task_options"]["swap_augment"] is True  # the task's own section


def test_recipe_values_per_task(recipe_folder):
    assert recipes.recipe_names() == ["trial"]
    assert recipes.load_recipe("trial", "classify") == {"weight_decay": 0.05, "warmup": 0.2, "label_smoothing": 0.1}
    assert recipes.load_recipe("trial", "ner") == {"weight_decay": 0.05, "warmup": 0.2}


def test_unknown_recipe_is_one_line(recipe_folder, tiny_model, sts_train_csv, tmp_path, capsys):
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(sts_train_csv), "--output-dir",
                     str(tmp_path / "run"), "--recipe", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--recipe: no recipe 'nope' (known: trial)" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
