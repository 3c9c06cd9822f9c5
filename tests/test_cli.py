"""The ``kluekit`` command: help, and bad input answered with one clear line and exit 2 (no traceback,
nothing half-written). Most tests call ``cli.main`` in-process (fast); two run the installed console script."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kluekit import cli


def kluekit(*args) -> subprocess.CompletedProcess:
    """Run ``cli.main`` in this process, capturing what it prints, as a CompletedProcess."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as stop:  # argparse: --help, invalid choices
            code = stop.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def console_script(*args) -> subprocess.CompletedProcess:
    """The installed ``kluekit`` command, as a user runs it."""
    command = shutil.which("kluekit", path=str(Path(sys.executable).parent)) or shutil.which("kluekit")
    assert command, "the kluekit console script is not installed (pip install -e .)"
    return subprocess.run([command, *map(str, args)], capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kluekit: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_help_lists_verbs_tasks_and_options():
    assert "train" in console_script("--help").stdout
    text = kluekit("train", "sts", "--help").stdout
    for option in ("--learning-rate", "--warmup", "--weight-decay", "--max-length", "--seed", "--shuffle",
                   "--loss", "{mse,l1,smooth_l1}", "--swap-augment", "--grad-accum", "--precision",
                   "--eval-steps", "--resume", "--group-by-length", "--config"):
        assert option in text, option
    assert "--sample-submission" in kluekit("predict", "sts", "--help").stdout
    assert "--worst" in kluekit("evaluate", "sts", "--help").stdout


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "train.csv"
    good.write_text("sentence1,sentence2,label\n가,나,1.0\n다,라,4.5\n", encoding="utf-8")
    no_label = tmp_path / "no_label.csv"
    no_label.write_text("sentence1,score\n가,1\n", encoding="utf-8")
    bad_label = tmp_path / "bad_label.csv"
    bad_label.write_text("sentence1,sentence2,label\n가,나,1.0\n다,라,5.5\n", encoding="utf-8")
    return {"good": good, "no_label": no_label, "bad_label": bad_label}


def test_bad_training_file_is_one_line_naming_file_row_column(files, tmp_path):
    line = one_error_line(kluekit("train", "sts", "--train", files["bad_label"], "--model", tmp_path / "nowhere",
                                  "--output-dir", tmp_path / "run"))
    assert line == f"kluekit: error: {files['bad_label']}:3: label: 5.5 is outside 0-5"
    line = one_error_line(kluekit("train", "sts", "--train", files["no_label"], "--output-dir", tmp_path / "run2"))
    assert line.startswith(f"kluekit: error: {files['no_label']}:1: sentence2: missing column")


@pytest.mark.parametrize("args, message", [
    (["--learning-rate", "-1"], "--learning-rate: -1.0 must be >= 0"),
    (["--model", "./no/such/model"], "--model: no such directory './no/such/model'"),
    (["--resume"], "--resume: no checkpoint to resume in"),
])
def test_bad_training_options(files, tmp_path, args, message):
    line = one_error_line(kluekit("train", "sts", "--train", files["good"], "--output-dir", tmp_path / "run", *args))
    assert message in line


def test_invalid_choices_are_refused_by_the_parser(files):
    result = kluekit("train", "sts", "--train", files["good"], "--loss", "huber")
    assert result.returncode == 2 and "invalid choice: 'huber'" in result.stderr
    result = kluekit("train", "sts", "--train", files["good"], "--format", "xlsx")
    assert result.returncode == 2 and "invalid choice: 'xlsx'" in result.stderr


def test_a_run_directory_is_never_overwritten_silently(files, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kept.txt").write_text("precious")
    line = one_error_line(kluekit("train", "sts", "--train", files["good"], "--output-dir", tmp_path / "run"))
    assert "is not empty; pass --resume to continue it or --overwrite to replace it" in line
    assert (tmp_path / "run" / "kept.txt").read_text() == "precious"


def test_config_file_options_and_unknown_keys(files, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("learning_rate: 2e-5\nwarm_up: 0.1\n")
    line = one_error_line(kluekit("train", "sts", "--config", config, "--train", files["good"]))
    assert "unknown option(s) warm_up" in line
    config.write_text("learning-rate: -5\n")
    line = one_error_line(kluekit("train", "sts", "--config", config, "--train", files["good"]))
    assert "--learning-rate: -5 must be >= 0" in line


@pytest.fixture
def fake_run(tmp_path):
    """A directory that says it is an STS run (enough to check inputs before any model is loaded)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "kluekit.json").write_text(json.dumps({"task": "sts", "task_options": {}, "labels": []}))
    return run


def test_predict_with_bad_input_writes_nothing(fake_run, tmp_path):
    test = tmp_path / "test.csv"
    test.write_text("id,source,sentence_1,sentence_2\na,s,가,나\nb,s,다, \n", encoding="utf-8")
    line = one_error_line(console_script("predict", "sts", "--model", fake_run, "--input", test,
                                  "--output", tmp_path / "output.csv"))
    assert line == f"kluekit: error: {test}:3: sentence_2: empty text"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "test.csv"]


def test_predict_refuses_a_directory_that_is_not_a_run(tmp_path, files):
    line = one_error_line(kluekit("predict", "sts", "--model", tmp_path, "--input", files["good"],
                                  "--output", tmp_path / "out.csv"))
    assert "is not a kluekit run directory" in line
    line = one_error_line(kluekit("predict", "sts", "--model", tmp_path, "--input", files["good"],
                                  "--output", files["good"]))
    assert "--output must not be the --input file" in line


def test_evaluate_needs_labels(fake_run, tmp_path):
    test = tmp_path / "test.csv"
    test.write_text("id,source,sentence_1,sentence_2\na,s,가,나\n", encoding="utf-8")
    line = one_error_line(kluekit("evaluate", "sts", "--model", fake_run, "--input", test))
    assert "label" in line and "missing column" in line


def test_killed_run_without_a_saved_model_is_explained(fake_run, files, tmp_path):
    line = one_error_line(kluekit("predict", "sts", "--model", fake_run, "--input", files["good"],
                                  "--output", tmp_path / "out.csv"))
    assert "holds no saved model yet" in line


def test_main_returns_2_in_process(capsys, tmp_path):
    assert cli.main(["predict", "sts", "--model", str(tmp_path), "--input", "x.csv", "--output", "y.csv"]) == 2
    assert capsys.readouterr().err.startswith("kluekit: error: --model:")


def test_predict_refuses_a_sample_submission_for_a_task_that_cannot_fill_one(tmp_path, files):
    run = tmp_path / "re-run"
    run.mkdir()
    (run / "kluekit.json").write_text(json.dumps({"task": "re", "task_options": {}, "labels": None}))
    line = one_error_line(kluekit("predict", "re", "--model", run, "--input", files["good"], "--output",
                                  tmp_path / "out.csv", "--sample-submission", files["good"]))
    assert line == "kluekit: error: --sample-submission is not supported for re: its submission is written in the input's order"


def test_a_task_brings_its_own_training_defaults(monkeypatch):
    """MRC trains with --max-length 384 unless told otherwise; other tasks keep 128; --help says so."""
    from kluekit import runner

    seen = {}
    monkeypatch.setattr(runner, "train", lambda task, cfg: seen.setdefault(task.name, []).append(cfg.max_length) or {})
    monkeypatch.setattr(cli, "print_train_result", lambda result, task: None)
    for argv in (["train", "mrc"], ["train", "mrc", "--max-length", "256"], ["train", "sts"]):
        cli.run([*argv, "--model", "m", "--train", "t.json"])
    assert seen == {"mrc": [384, 256], "sts": [128]}
    assert "(default: 384)" in " ".join(kluekit("train", "mrc", "--help").stdout.split())


def test_sts_trains_3_epochs_of_both_orders_unless_told_otherwise(monkeypatch):
    """The STS cross-encoder's defaults (quality_select_swap3.json): --swap-augment and 3 epochs; the bi-encoder,
    which inherits STS's reading and scoring, keeps one order and 4 epochs; the competition recipe keeps the 4
    epochs it was measured with; the command line still overrides both."""
    from kluekit import runner

    seen = []
    monkeypatch.setattr(runner, "train", lambda task, cfg: seen.append(
        (task.name, cfg.epochs, task.options.swap_augment)) or {})
    monkeypatch.setattr(cli, "print_train_result", lambda result, task: None)
    for argv in (["train", "sts"], ["train", "sts", "--epochs", "4", "--no-swap-augment"], ["train", "biencoder"],
                 ["train", "sts", "--recipe", "competition"]):
        cli.run([*argv, "--model", "m", "--train", "t.csv"])
    assert seen == [("sts", 3.0, True), ("sts", 4.0, False), ("biencoder", 4.0, False), ("sts", 4.0, True)]


def test_pair_and_text_classification_train_on_plain_random_batches(monkeypatch):
    """STS, the bi-encoder and classification default to --no-group-by-length (chosen on training splits:
    quality_select.json); --group-by-length still turns grouping on; other tasks keep grouping."""
    from kluekit import runner

    seen = []
    monkeypatch.setattr(runner, "train", lambda task, cfg: seen.append((task.name, cfg.group_by_length)) or {})
    monkeypatch.setattr(cli, "print_train_result", lambda result, task: None)
    for argv in (["train", "sts"], ["train", "biencoder"], ["train", "classify"], ["train", "sts", "--group-by-length"],
                 ["train", "ner"], ["train", "re"]):
        cli.run([*argv, "--model", "m", "--train", "t.csv"])
    assert seen == [("sts", False), ("biencoder", False), ("classify", False), ("sts", True), ("ner", True),
                    ("re", True)]
