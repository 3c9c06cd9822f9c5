"""Faults lose nothing: a kill (SIGKILL) resumes to exactly the uninterrupted result, a full or read-only disk is
one clear line with the previous checkpoint still usable and nothing half-written, a run is refused for another
task, and files follow the umask.

The runs follow the report that found these faults: 400 KLUE-STS rows, dev 100, batch 16, max length 64, 36
steps, evaluation every 8, seed 42, on a tiny BERT with dropout 0.1 (dropout draws random numbers, so a
resume that loses the random state shows).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kluekit import cli

ROOT = Path(__file__).resolve().parents[1]
KILL = ROOT / "benchmarks" / "kill_at_step.py"
OPTIONS = ["--max-steps", "36", "--eval-steps", "8", "--batch-size", "16", "--max-length", "64", "--seed", "42",
           "--learning-rate", "1e-3"]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory, sts_train_csv):
    from tiny_model import build_tiny_model, sts_texts

    return build_tiny_model(sts_texts(sts_train_csv), tmp_path_factory.mktemp("tiny-dropout") / "model",
                            vocab_size=1000, dropout=0.1)


@pytest.fixture(scope="module")
def files(tmp_path_factory, sts_train_csv):
    folder = tmp_path_factory.mktemp("fault-data")
    frame = pd.read_csv(sts_train_csv)
    frame.iloc[:400].to_csv(folder / "train.csv", index=False)
    frame.iloc[400:500].to_csv(folder / "dev.csv", index=False)
    return folder / "train.csv", folder / "dev.csv"


def train_args(model, files, out, *extra) -> list[str]:
    return ["train", "sts", "--model", str(model), "--train", str(files[0]), "--dev", str(files[1]),
            "--output-dir", str(out), *OPTIONS, *extra]


@pytest.fixture(scope="module")
def whole(tmp_path_factory, dropout_model, files):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert cli.main(train_args(dropout_model, files, out)) == 0
    return out


def errors(capsys) -> list[str]:
    """kluekit's own lines on stderr and any traceback (library progress bars and load reports aside; a bar may
    share the error's line, since it ends with a carriage return)."""
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    return [line[line.index("kluekit:"):] if "kluekit:" in line else line for line in lines
            if "kluekit:" in line or "Traceback" in line]


def history(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text())["history"]


def killed(args: list[str], count: int, when: str = "step") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(__import__("torch").get_num_threads())}
    return subprocess.run([sys.executable, str(KILL), str(count), "--when", when, *args], capture_output=True,
                          text=True, env=env, timeout=600)


def assert_same_end(run: Path, whole: Path) -> None:
    assert history(run) == history(whole)  # every evaluation, exactly (CPU)
    assert (run / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()


def test_sigkill_then_resume_ends_exactly_where_the_uninterrupted_run_does(dropout_model, files, whole, tmp_path):
    out = tmp_path / "run"
    result = killed(train_args(dropout_model, files, out), 12)
    assert result.returncode == -9, result.stderr[-2000:]
    progress = json.loads((out / "checkpoint" / "progress.json").read_text())
    assert progress["global_step"] == 8 and not (out / "metrics.json").exists()
    assert cli.main(train_args(dropout_model, files, out, "--resume")) == 0
    assert [h["step"] for h in history(out)] == [8, 16, 24, 32, 36]
    assert_same_end(out, whole)
    assert not (out / "checkpoint").exists()


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(dropout_model, files, whole, tmp_path):
    out = tmp_path / "run"
    result = killed(train_args(dropout_model, files, out), 2, when="checkpoint")  # during the step-16 checkpoint
    assert result.returncode == -9, result.stderr[-2000:]
    assert json.loads((out / "checkpoint" / "progress.json").read_text())["global_step"] == 8
    assert cli.main(train_args(dropout_model, files, out, "--resume")) == 0
    assert_same_end(out, whole)


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_previous_checkpoint_resumes(
        dropout_model, files, whole, tmp_path, monkeypatch, capsys):
    import torch

    from kluekit.engine import checkpoint

    out, real_save, saves = tmp_path / "run", torch.save, {"n": 0}

    def save(obj, handle, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] > 4:  # the second checkpoint (model, optimizer, scheduler, scaler each)
            raise ENOSPC
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    assert cli.main(train_args(dropout_model, files, out)) == 2
    assert errors(capsys) == [f"kluekit: error: cannot write {out / 'checkpoint.tmp'}: no space left on device"]
    assert not (out / "checkpoint.tmp").exists()
    assert json.loads((out / "checkpoint" / "progress.json").read_text())["global_step"] == 8
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert cli.main(train_args(dropout_model, files, out, "--resume")) == 0
    assert_same_end(out, whole)


def test_a_full_disk_at_the_first_save_is_one_line_and_the_command_can_be_run_again(
        dropout_model, files, tmp_path, monkeypatch, capsys):
    from transformers import PreTrainedModel

    out = tmp_path / "run"

    def full(self, *args, **kwargs):
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                           'message: "No space left on device" })')  # what safetensors raises

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    assert cli.main(train_args(dropout_model, files, out)) == 2
    assert errors(capsys) == [
        f"kluekit: error: cannot write {out}: no space left on device"]
    assert not out.exists()  # nothing left behind: the same command runs again without --overwrite
    monkeypatch.undo()
    assert cli.main(train_args(dropout_model, files, out)) == 0


def test_an_unwritable_output_dir_is_one_line(dropout_model, files, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(train_args(dropout_model, files, blocker / "run")) == 2
    assert errors(capsys) == [f"kluekit: error: --output-dir: cannot write {blocker / 'run'}: not a directory"]
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.name == "ro-run":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)  # as root, chmod would not stop a write
    assert cli.main(train_args(dropout_model, files, tmp_path / "ro-run")) == 2
    assert errors(capsys) == [f"kluekit: error: --output-dir: cannot write {tmp_path / 'ro-run'}: read-only file system"]


def test_predict_output_problems_stop_before_predicting(whole, files, tmp_path, monkeypatch, capsys):
    from kluekit.predictor import Predictor

    def never(self, examples):
        raise AssertionError("predicted before the output was checked")

    monkeypatch.setattr(Predictor, "predict", never)
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    for output, message in ((tmp_path / "folder", f"--output: {tmp_path / 'folder'} is a directory"),
                            (tmp_path / "a-file" / "out.csv",
                             f"--output: cannot create {tmp_path / 'a-file' / 'out.csv'}: {tmp_path / 'a-file'} is a file")):
        assert cli.main(["predict", "sts", "--model", str(whole), "--input", str(files[1]), "--output", str(output)]) == 2
        assert errors(capsys) == [f"kluekit: error: {message}"]


def test_predict_to_a_full_disk_is_one_line_and_leaves_no_file(whole, files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.csv"
    out.write_text("id,target\nold,1.0\n")
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda *args, **kwargs: (_ for _ in ()).throw(ENOSPC))
    assert cli.main(["predict", "sts", "--model", str(whole), "--input", str(files[1]), "--output", str(out)]) == 2
    assert errors(capsys) == [f"kluekit: error: cannot write {out}: no space left on device"]
    assert out.read_text() == "id,target\nold,1.0\n"  # the old file, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left


@pytest.mark.parametrize("verb, task", [("predict", "re"), ("evaluate", "classify"), ("predict", "biencoder")])
def test_a_run_is_refused_for_another_task(whole, files, tmp_path, capsys, verb, task):
    args = [verb, task, "--model", str(whole), "--input", str(files[1])]
    args += ["--output", str(tmp_path / "out.csv")] if verb == "predict" else ["--output-dir", str(tmp_path / "eval")]
    assert cli.main(args) == 2
    assert errors(capsys) == [f"kluekit: error: --model: {whole} was trained for sts, not {task}; use kluekit {verb} sts"]
    assert not list(tmp_path.iterdir())


def test_files_follow_the_umask(dropout_model, files, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert cli.main(train_args(dropout_model, files, out, "--max-steps", "8")) == 0
        assert cli.main(["predict", "sts", "--model", str(out), "--input", str(files[1]),
                         "--output", str(tmp_path / "out.csv")]) == 0
    finally:
        os.umask(old)
    written = [p for p in out.rglob("*") if p.is_file()] + [tmp_path / "out.csv"]
    assert {"model.safetensors", "metrics.json", "kluekit.json", "config.json", "out.csv"} <= {p.name for p in written}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written if p.stat().st_mode & 0o777 != 0o644} == {}


def test_a_checkpoint_of_an_older_kluekit_is_refused_not_resumed_from_scratch(dropout_model, files, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)  # what accelerate's save_state left before the engine: no model.pt
    (out / "checkpoint" / "progress.json").write_text(json.dumps({"global_step": 8, "epoch": 0, "batch": 8}))
    assert cli.main(train_args(dropout_model, files, out, "--resume")) == 2
    assert errors(capsys) == [f"kluekit: error: --resume: {out / 'checkpoint'} was written by an older kluekit and "
                              "cannot be resumed; start the run again (--overwrite)"]
