"""benchmarks/quality.py's bookkeeping: reused runs are read, not run again, and say where they ran."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("quality_bench", BENCH / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert quality.finish(SimpleNamespace(ran_on="GPU x1", reuse=True), done, figures, 0.0) == "GPU x1"
    assert figures["reused_runs"] == 2 and "wall_s" not in figures  # reused runs' time is not this process's
    with pytest.raises(SystemExit, match="--ran-on"):
        quality.finish(SimpleNamespace(ran_on=None, reuse=True), done, {}, 0.0)
    with pytest.raises(SystemExit, match="1 of the 2 runs ran here"):
        quality.finish(SimpleNamespace(ran_on="GPU x1", reuse=True), [done[0], {**done[1], "reused": False}], {}, 0.0)
