"""benchmarks/quality.py's bookkeeping: reused runs are read, not run again, and say where they ran."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def quality():
    return benchmark_module("quality")


def test_reused_runs_are_read_from_their_result_files(quality, tmp_path):
    jobs = []
    for seed, score in ((1, 80.0), (2, 82.0)):
        result = tmp_path / f"s{seed}.result.json"
        result.write_text(json.dumps({"score": score, "train_seconds": 10.0 * seed}))
        jobs.append({"dataset": "korsts", "recipe": "defaults", "seed": seed, "run_dir": str(tmp_path / f"s{seed}"),
                     "result": str(result)})
    done = quality.run_jobs(jobs, parallel=2, reuse=True)  # nothing to run: no process is started
    assert [d["score"] for d in done] == [80.0, 82.0] and all(d["reused"] for d in done)
    figures = quality.summary(done, "test")
    assert figures["korsts_test_defaults_mean"] == 81.0 and figures["korsts_test_defaults_train_seconds_mean"] == 15.0
    assert quality.summary(done[::-1], "test")["korsts_test_defaults_per_seed"] == "80.00 82.00"  # seed order
    assert quality.finish(SimpleNamespace(ran_on="GPU x1", reuse=True), done, figures, 0.0) == "GPU x1"
    assert figures["reused_runs"] == 2 and "wall_s" not in figures  # reused runs' time is not this process's
    with pytest.raises(SystemExit, match="--ran-on"):
        quality.finish(SimpleNamespace(ran_on=None, reuse=True), done, {}, 0.0)
    with pytest.raises(SystemExit, match="1 of the 2 runs ran here"):
        quality.finish(SimpleNamespace(ran_on="GPU x1", reuse=True), [done[0], {**done[1], "reused": False}], {}, 0.0)
    from kluekit.rundir import device_name  # reused from an earlier call on this machine, beside a run made now

    here = device_name()
    assert quality.finish(SimpleNamespace(ran_on=here, reuse=True), [done[0], {**done[1], "reused": False}], {},
                          0.0) == here


def test_write_recipe_keeps_the_tasks_another_selection_measured(quality, tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "ROOT", tmp_path)
    (tmp_path / "src/kluekit/recipes").mkdir(parents=True)
    path = tmp_path / "src/kluekit/recipes/competition.yaml"
    import yaml

    # an RE selection first: its section is added, nothing else exists yet
    quality.write_recipe(["rdrop_1"], {"klue_re_split_rdrop_1_mean": 79.0, "gain_rdrop_1": "+0.53"}, ("klue_re",))
    assert yaml.safe_load(path.read_text())["tasks"] == {"re": {"rdrop": 1.0}}
    # then an STS/NSMC selection: its tasks are written anew, the RE section and its comment stay
    figures = {"klue_sts_split_swap_augment_mean": 97.0, "gain_swap_augment": "+0.26",
               "klue_sts_split_no_grouping_mean": 97.0, "nsmc_split_no_grouping_mean": 84.0,
               "gain_no_grouping": "+0.06 +0.60"}
    quality.write_recipe(["no_grouping", "swap_augment"], figures)
    text = path.read_text()
    assert yaml.safe_load(text)["tasks"] == {"re": {"rdrop": 1.0}, "classify": {"group_by_length": False},
                                             "sts": {"group_by_length": False, "swap_augment": True}}
    assert "# rdrop_1: split gain +0.53 on klue_re (3 seeds)" in text
    assert "# swap_augment: split gain +0.26 on klue_sts (3 seeds)" in text
    # a second STS/NSMC selection replaces the first one's sections and comments
    quality.write_recipe([], {})
    text = path.read_text()
    assert yaml.safe_load(text)["tasks"] == {"re": {"rdrop": 1.0}} and "swap_augment" not in text
    assert quality.note_datasets("# rdrop_1: split gain +0.24 +1.00 on klue_sts / nsmc (3 seeds)") == ["klue_sts", "nsmc"]


def test_quick_files_copy_the_first_rows_of_every_train_file(quality, tmp_path):
    from conftest import shared_path

    import pandas as pd

    shared = shared_path("data").parent
    out = quality.files(shared, tmp_path, quick=True)
    assert set(out) == set(quality.DATASETS)
    trains = out["biencoder"]["train"]  # two train files, each cut to its first 96 rows in its own format
    assert [Path(p).suffix for p in trains] == [".csv", ".tsv"]
    assert len(pd.read_csv(trains[0])) == 96 and len(pd.read_csv(trains[1], sep="\t", quoting=3)) == 96
    assert len(json.loads(Path(out["klue_sts"]["test"]).read_text(encoding="utf-8"))) == 64
    assert Path(out["klue_ner"]["train"][0]).read_text(encoding="utf-8").count("\n\n") == 96
    assert quality.files(shared, tmp_path, quick=False)["nsmc"]["train"] == [str(shared / "data" / quality.DATASETS["nsmc"]["train"])]


def test_a_run_out_of_gpu_memory_goes_again_with_fewer_beside_it(quality, tmp_path, monkeypatch):
    attempts, terminated = [], []

    class FakeRun:  # a worker process: "a" runs out of memory on its first try, every other run writes its result
        def __init__(self, argv, stdout, **kwargs):
            job = json.loads(Path(argv[-1]).read_text())
            attempts.append(job["seed"])
            self.returncode = 0
            if job["seed"] == 1 and attempts.count(1) == 1:
                stdout.write("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 22.00 MiB\n")
                self.returncode = 1
            else:
                Path(job["result"]).write_text(json.dumps({"score": 80.0 + job["seed"], "train_seconds": 1.0}))

        def poll(self):
            return self.returncode

        def terminate(self):
            terminated.append(self)

    monkeypatch.setattr(quality.subprocess, "Popen", FakeRun)
    monkeypatch.setattr(quality.time, "sleep", lambda seconds: None)
    jobs = [{"dataset": "korsts", "recipe": "defaults", "seed": seed, "run_dir": str(tmp_path / f"s{seed}"),
             "result": str(tmp_path / f"s{seed}.result.json")} for seed in (1, 2, 3)]
    done = quality.run_jobs(jobs, parallel=3)
    assert sorted(d["score"] for d in done) == [81.0, 82.0, 83.0] and attempts.count(1) == 2

    class AlwaysOut(FakeRun):
        def __init__(self, argv, stdout, **kwargs):
            stdout.write("torch.OutOfMemoryError: CUDA out of memory\n")
            self.returncode = 1

    monkeypatch.setattr(quality.subprocess, "Popen", AlwaysOut)  # alone and still out of memory: one clear stop
    with pytest.raises(SystemExit, match="korsts defaults seed 1 failed: see"):
        quality.run_jobs(jobs[:1], parallel=3)

    class Running(FakeRun):  # runs until stopped
        def __init__(self, argv, stdout, **kwargs):
            self.returncode = None

    def fail_first(argv, stdout, **kwargs):  # seed 1 fails (not for memory), the others are still running
        if json.loads(Path(argv[-1]).read_text())["seed"] == 1:
            stdout.write("ValueError: a bad option\n")
            run = FakeRun.__new__(FakeRun)
            run.returncode = 2
            return run
        return Running(argv, stdout)

    monkeypatch.setattr(quality.subprocess, "Popen", fail_first)
    with pytest.raises(SystemExit, match="seed 1 failed"):
        quality.run_jobs(jobs, parallel=3)
    assert len(terminated) == 2  # the two still running were stopped


def test_flat_pearson_weights_every_label_bin_alike(quality):
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 200)
    preds = gold + rng.normal(0, 1, 200)
    assert quality.flat_pearson(preds, gold, weighted=False) == pytest.approx(100 * pearsonr(preds, gold)[0])
    # bins [0, 0.5) with two pairs and [4.5, 5] (5.0 included) with one: weights 1/2, 1/2, 1 are the plain
    # Pearson of the data with the lone pair written twice
    gold, preds = np.array([0.1, 0.4, 5.0]), np.array([0.3, 0.2, 4.0])
    twice = 100 * pearsonr([0.3, 0.2, 4.0, 4.0], [0.1, 0.4, 5.0, 5.0])[0]
    assert quality.flat_pearson(preds, gold) == pytest.approx(twice)
    assert quality.flat_pearson(preds, gold) != pytest.approx(100 * pearsonr(preds, gold)[0])


def test_held_out_file_writes_the_rows_kluekit_holds_out(quality, tmp_path):
    from conftest import shared_path

    from kluekit.config import TrainConfig
    from kluekit.tasks import get_task_class
    from kluekit.training import split_off

    train = shared_path("data", "klue_sts", "klue_sts_train.csv")
    job = {"dataset": "klue_sts", "files": {"train": [str(train)]}, "seed": 3, "split_seed": 2}
    path, held = quality.held_out_file(job, tmp_path)
    task = get_task_class("sts")()
    written = task.read(path)  # the raw rows, readable as the training file is
    expected = split_off(task, task.read(train), TrainConfig(train=[str(train)], dev_split=0.1, seed=2), False)[1]
    assert len(written) == len(expected) == 1167
    assert written["sentence1"].tolist() == expected["sentence1"].tolist() == held["sentence1"].tolist()
    assert written["label"].tolist() == expected["label"].tolist()


def test_ensemble_groups_share_their_first_seeds_split(quality, monkeypatch, tmp_path):
    class Planned(Exception):
        pass

    def run_jobs(jobs, *args, **kwargs):  # stop at the plan: nothing is trained, nothing written
        raise Planned(jobs)

    monkeypatch.setattr(quality, "run_jobs", run_jobs)
    monkeypatch.setattr(quality, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["quality.py", "--phase", "select", "--datasets", "klue_sts", "--variants",
                                      "defaults", "--seeds", "1", "2", "3", "4", "5", "6", "--ensemble", "3"])
    with pytest.raises(Planned) as planned:
        quality.main()
    jobs = planned.value.args[0]
    assert [(j["seed"], j["split_seed"]) for j in jobs] == [(1, 1), (2, 1), (3, 1), (4, 4), (5, 4), (6, 4)]
    assert jobs[1]["run_dir"].endswith("select-klue_sts-defaults-s2-on1") and jobs[0]["run_dir"].endswith("-s1")
    monkeypatch.setattr(sys, "argv", ["quality.py", "--phase", "report", "--seeds", "1", "2", "--ensemble", "3"])
    with pytest.raises(SystemExit):  # 3 does not divide 2 seeds
        quality.main()


def test_reuse_reads_an_earlier_calls_ensemble_report(quality, monkeypatch, tmp_path):
    def kluekit(*argv):  # the runs are gone: scoring them again would fail
        raise AssertionError(f"kluekit {' '.join(argv)} called")

    monkeypatch.setattr(quality, "kluekit", kluekit)
    done = [{"phase": "report", "dataset": "klue_re", "recipe": "defaults", "seed": s, "score": score,
             "run_dir": str(tmp_path / f"gone-s{s}"), "files": {"test": "test.csv"}}
            for s, score in zip(range(1, 7), [50.0, 52.0, 54.0, 51.0, 53.0, 55.0])]
    for first, last, f1 in [(1, 3, 56.0), (4, 6, 58.0)]:
        report = tmp_path / f"report-klue_re-defaults-ensemble-s{first}-{last}/ensemble-report"
        report.mkdir(parents=True)
        (report / "metrics.json").write_text(json.dumps({"micro_f1": f1}))
    figures = quality.ensembles(done, 3, "test", tmp_path, reuse=True)
    assert figures["klue_re_test_defaults_ensemble3_mean"] == 57.0
    assert figures["klue_re_test_defaults_ensemble3_per_group"] == "56.00 58.00"
    assert figures["gain_ensemble3_klue_re_defaults"] == "+4.50"  # 57 - the six runs' mean 52.5
    with pytest.raises(AssertionError, match="kluekit ensemble"):  # without --reuse it scores them again
        quality.ensembles(done, 3, "test", tmp_path)


def test_distill_students_learn_from_their_group_on_its_split(quality):
    def job(dataset, recipe, seed, options, tag="", split_seed=None):
        return {"dataset": dataset, "recipe": recipe, "seed": seed, "options": options, "split_seed": split_seed}

    done = [{"dataset": "klue_re", "recipe": "rdrop_1", "seed": s, "split_seed": 1 if s <= 3 else 4, "score": score,
             "options": ["--rdrop", "1.0"], "run_dir": f"runs/s{s}"}
            for s, score in zip(range(1, 7), [50.0, 52.0, 54.0, 51.0, 53.0, 55.0])]
    done.append({"dataset": "klue_re", "recipe": "trainer", "seed": 1, "score": 40.0, "options": [], "run_dir": "t"})
    students = quality.student_jobs(done, 3, 2, job)
    assert [(j["recipe"], j["seed"], j["split_seed"]) for j in students] == [
        ("rdrop_1_distilled3", 1001, 1), ("rdrop_1_distilled3", 1002, 1),
        ("rdrop_1_distilled3", 1004, 4), ("rdrop_1_distilled3", 1005, 4)]  # the Trainer teaches no one
    assert students[2]["options"] == ["--rdrop", "1.0", "--teacher", "runs/s4", "runs/s5", "runs/s6"]
    scored = [{**j, "score": score, "train_seconds": 1.0} for j, score in zip(students, [53.0, 55.0, 54.0, 56.0])]
    figures = quality.distilled(done, scored, 3, "test")
    assert figures["klue_re_test_rdrop_1_distilled3_mean"] == 54.5
    assert figures["gain_distilled3_klue_re_rdrop_1"] == "+2.00"  # 54.5 - the six teachers' mean 52.5


def test_speed_repeats_take_turns_and_count_the_fastest_run(quality, monkeypatch):
    seconds = iter([9.0, 30.0, 6.0, 33.0])  # defaults, trainer, defaults again (faster), trainer again (slower)
    order = []

    def fake_run_jobs(jobs, parallel, reuse=False):
        assert parallel == 1 and len(jobs) == 1  # alone on the device
        order.append((jobs[0]["recipe"], jobs[0]["run_dir"]))
        pace = {"steps": 100, "steady_tokens_per_s": 9000.0} if jobs[0]["recipe"] == "defaults" else {}
        return [{**jobs[0], "score": 80.0, "train_seconds": next(seconds), **pace}]

    def job(dataset, recipe, seed, options, tag=""):
        return {"dataset": dataset, "recipe": recipe, "seed": seed, "run_dir": f"speed-{dataset}-{recipe}{tag}"}

    monkeypatch.setattr(quality, "run_jobs", fake_run_jobs)
    figures, done = quality.speed(["korsts"], {"defaults": [], "trainer": []}, job, 1, repeats=2)
    assert [recipe for recipe, _ in order] == ["defaults", "trainer", "defaults", "trainer"] and len(done) == 4
    assert order[0][1] == "speed-korsts-defaults-alone" and order[2][1] == "speed-korsts-defaults-alone-r2"
    assert figures["korsts_defaults_alone_train_seconds"] == 6.0 and figures["korsts_trainer_alone_train_seconds"] == 30.0
    assert figures["korsts_defaults_alone_train_seconds_runs"] == "9.00 6.00"
    assert figures["korsts_speedup_vs_trainer"] == 5.0
    assert figures["korsts_defaults_alone_steps"] == 100 and figures["korsts_defaults_alone_steady_tokens_per_s"] == 9000.0
    assert "korsts_trainer_alone_steps" not in figures  # the Trainer's runs do not record them
