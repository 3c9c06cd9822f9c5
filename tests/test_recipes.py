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


def test_a_recipe_with_nothing_for_the_task_is_one_line(recipe_folder):
    (recipe_folder / "narrow.yaml").write_text("tasks:\n  sts: {rdrop: 1.0}\n")
    message = r"--recipe narrow: it sets nothing for ner \(it has options for: sts\)"
    with pytest.raises(recipes.KluekitError, match=message):
        recipes.load_recipe("narrow", "ner")


def test_the_shipped_competition_recipe_holds_the_measured_levers():
    """The file benchmarks/quality.py --write-recipe wrote: every value is a real option of its task."""
    from kluekit.config import TrainConfig
    from kluekit.tasks import get_task_class

    assert "competition" in recipes.recipe_names()
    for task in ("sts", "classify"):
        values = recipes.load_recipe("competition", task)
        assert values["rdrop"] == 1.0 and values["group_by_length"] is False
        known = set(TrainConfig.__dataclass_fields__) | set(get_task_class(task).Options.__dataclass_fields__)
        assert set(values) <= known
    assert recipes.load_recipe("competition", "sts")["swap_augment"] is True
