"""benchmarks/pool_runs.py: several calls' runs of one benchmark pooled, checked against hand-computed figures."""

from __future__ import annotations

import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def pool_runs():
    return benchmark_module("pool_runs")


def call(seeds, per_seed, per_group, device="GPU x1"):
    return {"device": device, "model": "m", "seeds": seeds, "x_test_r_mean": 0.0, "x_test_r_per_seed": per_seed,
            "x_test_r_ensemble2_per_group": per_group}


def test_lists_are_joined_with_their_mean_spread_and_the_ensemble_gain(pool_runs):
    figures = pool_runs.pool([call([1, 2, 3, 4], "50.00 52.00 54.00 56.00", "55.00 57.00"),
                              call([5, 6], "58.00 60.00", "60.00")])
    assert figures["seeds"] == [1, 2, 3, 4, 5, 6]
    assert figures["x_test_r_per_seed"] == "50.00 52.00 54.00 56.00 58.00 60.00"
    assert figures["x_test_r_mean"] == 55.0 and figures["x_test_r_std"] == 3.74  # sqrt(70 / 5) = 3.7417
    assert figures["x_test_r_ensemble2_mean"] == 57.33 and figures["x_test_r_ensemble2_std"] == 2.52  # sqrt(19/3)
    assert figures["x_test_r_ensemble2_gain"] == "+2.33"


@pytest.mark.parametrize("second, message", [
    (call([4, 5], "1 2", "1"), "a seed is in two"),
    (call([5, 6], "1 2", "1", device="CPU"), "differ in device"),
    ({"device": "GPU x1", "model": "m", "seeds": [9]}, "share no"),
])
def test_files_that_cannot_be_pooled_are_refused(pool_runs, second, message):
    with pytest.raises(SystemExit, match=message):
        pool_runs.pool([call([1, 2, 3, 4], "1 2 3 4", "1 2"), second])
