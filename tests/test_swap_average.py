"""--swap-average: an STS run scores each pair in both orders and predicts their mean, in dev scoring and predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pandas as pd

from kluekit import cli
from kluekit.predictor import Predictor
from kluekit.tasks.sts import STSOptions, STSTask


def test_outputs_average_the_two_orders_only_when_the_features_say_so():
    task = STSTask(STSOptions(swap_average=True))
    raw = np.array([[1.0], [2.0], [6.0], [3.0], [4.0], [6.0]], dtype=np.float32)  # 3 pairs, then the 3 swapped
    assert task.outputs(raw, {"_order": [0, 0, 0, 1, 1, 1]}).tolist() == [2.0, 3.0, 5.0]  # mean, then clipped
    assert task.outputs(raw).tolist() == [1.0, 2.0, 5.0, 3.0, 4.0, 5.0]  # raw from plain features: as it is


def test_a_swap_average_run_predicts_the_mean_of_both_orders(tmp_path, tiny_model, sts_train_csv, sts_dev_json):
    train = tmp_path / "train.csv"
    pd.read_csv(sts_train_csv).head(300).to_csv(train, index=False)
    run = tmp_path / "run"
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--dev", str(sts_dev_json),
                     "--output-dir", str(run), "--max-steps", "20", "--learning-rate", "1e-3", "--max-length", "64",
                     "--swap-average", "--no-tensorboard"]) == 0
    assert json.loads((run / "kluekit.json").read_text())["task_options"]["swap_average"] is True
    predictor = Predictor(run, "sts", precision="fp32", progress=False)
    frame = predictor.read(sts_dev_json).head(40)
    averaged = predictor.predict(frame)
    predictor.task.options.swap_average = False
    forward = predictor.predict(frame)
    backward = predictor.predict(frame.rename(columns={"sentence1": "sentence2", "sentence2": "sentence1"}))
    assert not np.allclose(forward, backward)  # the cross-encoder is not symmetric: the mean differs from each
    np.testing.assert_allclose(averaged, np.clip((forward + backward) / 2, 0, 5), atol=1e-5)
    # the dev figure training recorded is the averaged one
    dev = predictor.read(sts_dev_json)
    predictor.task.options.swap_average = True
    recorded = json.loads((run / "metrics.json").read_text())["history"][-1]["pearson"]
    assert abs(predictor.task.metrics(predictor.predict(dev), predictor.task.gold(dev))["pearson"] - recorded) < 1e-3


def test_predict_and_evaluate_can_score_one_order_of_a_swap_average_run(tmp_path, tiny_model, sts_train_csv,
                                                                         sts_dev_json):
    train = tmp_path / "train.csv"
    pd.read_csv(sts_train_csv).head(200).to_csv(train, index=False)
    run = tmp_path / "run"  # the STS defaults: --swap-average on
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--output-dir", str(run),
                     "--max-steps", "10", "--learning-rate", "1e-3", "--max-length", "64", "--no-tensorboard"]) == 0
    assert json.loads((run / "kluekit.json").read_text())["task_options"]["swap_average"] is True
    one_order = Predictor(run, "sts", precision="fp32", progress=False, task_options={"swap_average": False})
    frame = one_order.read(sts_dev_json).head(30)
    subset = tmp_path / "dev.csv"
    frame[["sentence1", "sentence2", "label"]].to_csv(subset, index=False)
    expected = {"both": Predictor(run, "sts", precision="fp32", progress=False).predict(frame),
                "one": one_order.predict(frame)}
    assert not np.allclose(expected["both"], expected["one"])
    for name, flags in (("both", []), ("one", ["--no-swap-average"])):
        out = tmp_path / f"{name}.csv"
        assert cli.main(["predict", "sts", "--model", str(run), "--input", str(subset), "--output", str(out),
                         "--precision", "fp32", *flags]) == 0
        np.testing.assert_allclose(pd.read_csv(out)["target"].to_numpy(), expected[name], atol=1e-5)
    assert cli.main(["evaluate", "sts", "--model", str(run), "--input", str(subset), "--output-dir",
                     str(tmp_path / "eval"), "--precision", "fp32", "--no-swap-average"]) == 0
    assert json.loads((tmp_path / "eval/metrics.json").read_text())["swap_average"] is False
    assert Predictor(run, "sts").task.options.swap_average is True  # the run itself is unchanged


def test_runs_saved_before_the_option_score_one_order(tmp_path, tiny_model, sts_train_csv):
    train = tmp_path / "train.csv"
    pd.read_csv(sts_train_csv).head(50).to_csv(train, index=False)
    run = tmp_path / "run"
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--output-dir", str(run),
                     "--max-steps", "1", "--max-length", "32", "--no-tensorboard"]) == 0
    record = json.loads((run / "kluekit.json").read_text())
    for name in ("swap_average", "init_mean"):
        del record["task_options"][name]
    (run / "kluekit.json").write_text(json.dumps(record))
    options = Predictor(run, "sts").task.options
    assert (options.swap_average, options.init_mean) == (False, False)


def test_only_sts_offers_the_inference_option():
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["predict", "classify", "--model", "m", "--input", "i", "--output", "o",
                                       "--no-swap-average"])
