"""``--adapt-prior`` (label shift, EM of Saerens et al. 2002): by hand, against scipy's maximum-likelihood
optimum, on data drawn with known shares, and end to end through predict, evaluate and ensemble."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from conftest import shared_path
from kluekit import cli
from kluekit.errors import KluekitError
from kluekit.labelshift import (CALIBRATION_KEY, PRIOR_KEY, adapt_prior, adapt_share, calibrated, class_shares,
                                fit_calibration, focal_posteriors, unsmoothed_posteriors, unweighted_posteriors)

STEPS = ["--max-steps", "4", "--batch-size", "16", "--max-length", "48", "--learning-rate", "1e-3"]


def test_two_em_steps_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    _, shares, steps = adapt_prior(probs, [0.5, 0.5], max_iter=1)
    assert steps == 1 and shares == pytest.approx([0.55, 0.45])  # equal shares: the first step is the mean
    adjusted, shares, _ = adapt_prior(probs, [0.5, 0.5], max_iter=2)
    # weights 0.55 / 0.5 = 1.1 and 0.45 / 0.5 = 0.9: rows (0.99, 0.09) / 1.08 and (0.22, 0.72) / 0.94
    np.testing.assert_allclose(adjusted, [[0.99 / 1.08, 0.09 / 1.08], [0.22 / 0.94, 0.72 / 0.94]])
    assert shares == pytest.approx([(0.99 / 1.08 + 0.22 / 0.94) / 2, (0.09 / 1.08 + 0.72 / 0.94) / 2])  # their mean


def test_fixed_point_is_scipys_maximum_likelihood_shares():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.6, 0.6, 0.6], size=400)
    prior = np.array([0.5, 0.3, 0.2])
    adjusted, shares, steps = adapt_prior(probs, prior)
    assert steps < 1000

    def neg_log_likelihood(z):  # shares as a softmax of free parameters
        pi = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        return -np.log((probs * pi / prior).sum(axis=1)).sum()

    best = minimize(neg_log_likelihood, np.zeros(3), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                                     "maxiter": 20000})
    optimum = np.exp(best.x - best.x.max()) / np.exp(best.x - best.x.max()).sum()
    np.testing.assert_allclose(shares, optimum, atol=1e-4)
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0)
    np.testing.assert_allclose(adjusted.mean(axis=0), shares, atol=1e-9)


def posteriors(x, shares):
    """Exact class posteriors of two unit Gaussians at -1 and +1 mixed with ``shares``."""
    likelihood = np.stack([norm.pdf(x, -1.0), norm.pdf(x, 1.0)], axis=1) * shares
    return likelihood / likelihood.sum(axis=1, keepdims=True)


def test_recovers_the_shares_of_a_shifted_set():
    rng = np.random.default_rng(1)
    train, test = np.array([0.7, 0.3]), np.array([0.25, 0.75])
    labels = rng.random(40000) < test[1]
    x = np.where(labels, rng.normal(1.0, 1.0, labels.size), rng.normal(-1.0, 1.0, labels.size))
    model = posteriors(x, train)  # a calibrated model trained with the training shares
    adjusted, shares, _ = adapt_prior(model, train)
    assert shares == pytest.approx(test, abs=0.015)
    np.testing.assert_allclose(adjusted, posteriors(x, shares), atol=1e-4)  # Bayes' rule with the new shares
    assert (adjusted.argmax(1) == labels).mean() > (model.argmax(1) == labels).mean()
    # no shift: the shares stay where they were
    same = rng.random(40000) < train[1]
    x = np.where(same, rng.normal(1.0, 1.0, same.size), rng.normal(-1.0, 1.0, same.size))
    assert adapt_prior(posteriors(x, train), train)[1] == pytest.approx(train, abs=0.015)


def minimiser(p, loss):
    """scipy's minimiser q (on the simplex, as a softmax) of the expected loss sum_i p_i loss(q, i)."""
    def risk(z):
        q = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        return sum(p_i * loss(q, i) for i, p_i in enumerate(p))

    best = minimize(risk, np.log(p), method="Nelder-Mead", options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 40000})
    return np.exp(best.x - best.x.max()) / np.exp(best.x - best.x.max()).sum()


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_posteriors_invert_the_focal_loss_minimiser(gamma):
    rng = np.random.default_rng(int(gamma * 10))
    for p in rng.dirichlet([1.0, 1.0, 1.0], size=3):
        q = minimiser(p, lambda q, i: -(1 - q[i]) ** gamma * np.log(q[i]))
        assert np.abs(q - p).max() > 0.01  # focal outputs are not the posteriors
        np.testing.assert_allclose(focal_posteriors(q[None], gamma)[0], p, atol=2e-4)
    q = rng.dirichlet([1.0] * 4, size=5)
    np.testing.assert_allclose(focal_posteriors(q, 0.0), q)  # gamma 0: cross-entropy
    assert (focal_posteriors(q, 2.0).argmax(1) == q.argmax(1)).all()  # the order is kept
    assert np.isfinite(focal_posteriors(np.array([[1.0, 0.0, 0.0]]), 2.0)).all()


def test_weighted_and_smoothed_posteriors_invert_their_minimisers():
    p, w = np.array([0.6, 0.3, 0.1]), np.array([0.5, 1.0, 3.0])
    q = minimiser(p, lambda q, i: -w[i] * np.log(q[i]))
    np.testing.assert_allclose(q, w * p / (w * p).sum(), atol=2e-4)  # by hand: q proportional to w p
    np.testing.assert_allclose(unweighted_posteriors(q[None], w)[0], p, atol=2e-4)
    eps = 0.1
    q = minimiser(p, lambda q, i: -((1 - eps) * np.log(q[i]) + eps / 3 * np.log(q).sum()))
    np.testing.assert_allclose(q, 0.9 * p + 0.1 / 3, atol=2e-4)
    np.testing.assert_allclose(unsmoothed_posteriors(q[None], eps)[0], p, atol=2e-4)


def test_em_on_focal_outputs_needs_their_posteriors():
    """A model trained with focal loss (its outputs the loss's minimiser of exact posteriors): EM on the outputs
    estimates the shift wrong; on ``focal_posteriors`` of them it recovers the true shares."""
    from scipy.optimize import brentq

    rng = np.random.default_rng(3)
    train, test, gamma = np.array([0.7, 0.3]), np.array([0.3, 0.7]), 2.0
    labels = rng.random(3000) < test[1]
    x = np.where(labels, rng.normal(1.0, 1.0, labels.size), rng.normal(-1.0, 1.0, labels.size))
    exact = posteriors(x, train)

    def slope(v):  # -d/dv of -(1 - v)^gamma log v
        return (1 - v) ** gamma / v - gamma * (1 - v) ** (gamma - 1) * np.log(v)

    q1 = np.array([brentq(lambda v: p1 * slope(v) - (1 - p1) * slope(1 - v), 1e-9, 1 - 1e-9) for p1 in exact[:, 1]])
    focal = np.stack([1 - q1, q1], axis=1)
    wrong = adapt_prior(focal, train)[1]
    right = adapt_prior(focal_posteriors(focal, gamma), train)[1]
    assert right == pytest.approx(test, abs=0.03)
    assert abs(wrong[1] - test[1]) > 3 * abs(right[1] - test[1])


def test_the_re_task_maps_its_outputs_by_its_loss():
    from kluekit.tasks.re import REOptions, RETask

    q = np.random.default_rng(4).dirichlet([1.0] * 30, size=4)
    assert RETask(REOptions(loss="ce")).posteriors(q) is q
    np.testing.assert_allclose(RETask(REOptions(loss="focal", focal_gamma=1.5)).posteriors(q), focal_posteriors(q, 1.5))
    task = RETask(REOptions(loss="weighted_ce"))
    task.train_prior = np.full(30, 1 / 30)
    np.testing.assert_allclose(task.posteriors(q), q)  # equal shares: equal weights


def test_platt_scaling_is_the_logistic_maximum_likelihood():
    rng = np.random.default_rng(6)
    gold = rng.integers(0, 3, 500)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=500)
    probs[gold == 0, 0] += 0.5
    probs /= probs.sum(axis=1, keepdims=True)
    fitted = fit_calibration(probs, gold, 0)
    z, y = np.log(probs[:, 0] / (1 - probs[:, 0])), gold == 0

    def nll(x):
        s = x[0] * z + x[1]
        return np.mean(np.logaddexp(0, s) - y * s)

    best = minimize(nll, [1.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14}).x
    assert [fitted["slope"], fitted["intercept"]] == pytest.approx(best, abs=2e-3)
    assert fitted["share"] == pytest.approx(y.mean(), abs=1e-4) and fitted["rows"] == 500  # the intercept's optimum
    assert calibrated(probs, fitted) == pytest.approx(1 / (1 + np.exp(-(best[0] * z + best[1]))), abs=1e-3)
    assert fit_calibration(probs, np.zeros(500, dtype=int), 0) is None  # only the label: nothing to fit


def test_a_calibrated_share_survives_an_overconfident_model():
    """Overconfident posteriors (exact ones sharpened): EM over the labels misses the shift, EM on the label's
    probability calibrated on a dev set with the training shares finds it; the other labels keep their ratio."""
    rng = np.random.default_rng(7)
    train, test = np.array([0.7, 0.3]), np.array([0.3, 0.7])

    def drawn(shares, n):
        labels = (rng.random(n) < shares[1]).astype(np.int64)
        x = np.where(labels == 1, rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n))
        sharp = posteriors(x, train) ** 3
        return sharp / sharp.sum(axis=1, keepdims=True), labels

    dev, dev_gold = drawn(train, 4000)
    calibration = fit_calibration(dev, dev_gold, 0)
    probs, gold = drawn(test, 20000)
    wrong = adapt_prior(probs, train)[1]
    adapted, shares, steps = adapt_share(probs, train, 0, calibrated(probs, calibration), calibration["share"])
    assert shares == pytest.approx(class_shares(gold, 2), abs=0.02) and steps < 1000
    assert abs(wrong[0] - 0.3) > 2 * abs(shares[0] - 0.3)
    assert (adapted.argmax(1) == gold).mean() > (probs.argmax(1) == gold).mean()
    three = np.array([[0.5, 0.3, 0.2]])  # the other labels keep their ratio
    out, split, _ = adapt_share(three, [0.5, 0.25, 0.25], 0, np.array([0.5]), 0.5)
    assert split[1] == pytest.approx(split[2]) and out[0, 1] / out[0, 2] == pytest.approx(1.5)


def test_unseen_classes_keep_their_weight_and_shapes_are_checked():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    adjusted, shares, _ = adapt_prior(probs, [0.5, 0.5, 0.0])
    assert shares[2] == 0.0 and np.isfinite(adjusted).all()
    with pytest.raises(KluekitError, match="--adapt-prior"):
        adapt_prior(probs, [0.5, 0.5])
    assert class_shares(np.array([0, 2, 2, 2]), 4) == pytest.approx([0.25, 0.0, 0.75, 0.0])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("labelshift")
    rows = pd.read_csv(shared_path("data", "nsmc", "ratings_train_first5000.txt"), sep="\t").dropna()
    rows = rows.rename(columns={"document": "text"})
    train = pd.concat([rows[rows.label == 0].head(48), rows[rows.label == 1].head(16)])  # shares 0.75 / 0.25
    train.to_csv(folder / "train.tsv", sep="\t", index=False)
    test = pd.concat([rows[rows.label == 0].iloc[100:110], rows[rows.label == 1].iloc[100:140]])
    test.to_csv(folder / "test.tsv", sep="\t", index=False)
    for seed in (1, 2):  # a dev split: the run records its calibration there (--adapt-prior needs it)
        assert cli.main(["train", "classify", "--model", str(tiny_model), "--train", str(folder / "train.tsv"),
                         "--output-dir", str(folder / f"run{seed}"), "--seed", str(seed), "--dev-split", "0.25",
                         *STEPS]) == 0
    return folder


def test_the_run_records_its_training_shares(classifier):
    info = json.loads((classifier / "run1" / "kluekit.json").read_text())
    assert info[PRIOR_KEY] == pytest.approx([0.75, 0.25])  # the 48 training rows after the split: 36 / 12
    calibration = info[CALIBRATION_KEY]
    assert calibration["label"] == 0 and calibration["rows"] == 16 and calibration["share"] == pytest.approx(0.75, abs=1e-3)


def test_predict_evaluate_and_ensemble(classifier, capsys):
    test, run = str(classifier / "test.tsv"), str(classifier / "run1")
    for adapt in ([], ["--adapt-prior"]):
        name = "adapted" if adapt else "plain"
        assert cli.main(["predict", "classify", "--model", run, "--input", test,
                         "--output", str(classifier / f"{name}.csv"), *adapt]) == 0
        assert cli.main(["evaluate", "classify", "--model", run, "--input", test,
                         "--output-dir", str(classifier / f"eval-{name}"), *adapt]) == 0
    plain = json.loads((classifier / "eval-plain" / "metrics.json").read_text())
    adapted = json.loads((classifier / "eval-adapted" / "metrics.json").read_text())
    assert "estimated_label_shares" not in plain and adapted["adapt_prior"] is True
    shares = adapted["estimated_label_shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    # the shares the written probabilities average to are the estimated ones
    written = pd.read_csv(classifier / "eval-adapted" / "predictions.csv")
    assert len(written) == 50
    from kluekit.predictor import Predictor

    predictor = Predictor(run, progress=False)
    probs = predictor.predict(predictor.read(test))
    task = predictor.task
    expected = adapt_share(probs, task.train_prior, 0, calibrated(probs, task.calibration), task.calibration["share"])[1]
    assert [shares[label] for label in predictor.task.labels] == pytest.approx(expected, abs=1e-6)
    out = classifier / "ensemble.csv"
    assert cli.main(["ensemble", "--model", run, str(classifier / "run2"), "--input", test, "--output", str(out),
                     "--evaluate", "--adapt-prior"]) == 0
    report = json.loads((classifier / "ensemble-report" / "metrics.json").read_text())
    assert report["adapt_prior"] is True and set(report["estimated_label_shares"]) == set(shares)


def test_errors_are_one_line(classifier, tmp_path, capsys):
    info_path = classifier / "run2" / "kluekit.json"
    old = tmp_path / "old"  # a run saved before the shares were recorded
    import shutil

    shutil.copytree(classifier / "run2", old)
    info = json.loads(info_path.read_text())
    for key, message in ((CALIBRATION_KEY, "records no calibration"), (PRIOR_KEY, "records no training label shares")):
        info.pop(key)
        (old / "kluekit.json").write_text(json.dumps(info))
        code = cli.main(["predict", "classify", "--model", str(old), "--input", str(classifier / "test.tsv"),
                         "--output", str(tmp_path / "x.csv"), "--adapt-prior"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "x.csv").exists()
    with pytest.raises(SystemExit):  # STS predictions are scores: the option is not offered
        cli.build_parser().parse_args(["predict", "sts", "--model", "m", "--input", "i", "--output", "o",
                                       "--adapt-prior"])
    from kluekit.predictor import check_prior
    from kluekit.tasks.sts import STSTask

    with pytest.raises(KluekitError, match="sts predictions are not class probabilities"):  # ensemble, the API
        check_prior(STSTask(), "run")


def test_benchmark_resamples_to_the_share_without_repeats():
    from conftest import benchmark_module

    resample = benchmark_module("label_shift").resample
    gold = np.array([0] * 30 + [1] * 70)
    for share in (0.15, 0.3, 0.6, 0.9):
        rows = resample(gold, 0, share, np.random.default_rng(0))
        assert len(set(rows)) == len(rows) and (gold[rows] == 0).mean() == pytest.approx(share, abs=0.01)
        assert (gold[rows] == 0).sum() == 30 or (gold[rows] == 1).sum() == 70  # the short side kept whole


def test_benchmark_scores_saved_outputs(tmp_path):
    """label_shift.py --from-probs: outputs saved with their task record (calibration included), scored without a
    model; the oracle (the true shares) is Bayes' rule, the calibrated estimate close to it."""
    from conftest import benchmark_module

    bench = benchmark_module("label_shift")
    rng = np.random.default_rng(5)
    train, test = np.array([0.7, 0.3]), np.array([0.3, 0.7])

    def drawn(shares, n):
        labels = (rng.random(n) < shares[1]).astype(np.int64)
        return posteriors(np.where(labels == 1, rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n)), train), labels

    dev, dev_gold = drawn(train, 2000)
    record = {"task": "classify", "options": {}, "labels": ["neg", "pos"],
              "calibration": fit_calibration(dev, dev_gold, 0)}
    probs, labels = drawn(test, 4000)
    np.savez_compressed(tmp_path / "selecttest-toy-r-s1.npz", probs=probs, gold=labels, prior=train,
                        record=json.dumps(record))
    np.savez_compressed(tmp_path / "select-toy-r-s1.npz", probs=dev, gold=dev_gold, prior=train,
                        record=json.dumps({**record, "calibration": None}))
    items = bench.loaded([tmp_path / "selecttest-toy-r-s1.npz"], "toy")
    task = items[0][1]
    assert task.labels == ["neg", "pos"] and task.train_prior == pytest.approx(train) and items[0][5] is not None
    scored, share = bench.scores(task, *items[0][2:])
    assert share == pytest.approx(test[0], abs=0.03)
    best = task.metrics(posteriors(np.log(probs[:, 1] / probs[:, 0] * train[0] / train[1]) / 2,
                                   class_shares(labels, 2)), labels)[task.primary_metric]
    assert scored["oracle"] == pytest.approx(best) and scored["adapted"] > scored["plain"] + 2
    assert scored["full_em"] == pytest.approx(scored["adapted"], abs=0.5)  # calibrated already: both find the shift
    figures = bench.test_figures(items, "toy_test")
    assert figures["gain_adapt_prior_toy_test"] == pytest.approx(scored["adapted"] - scored["plain"], abs=0.01)
    assert "toy_test_ensemble1_adapted" in figures
    split = bench.select_figures(bench.loaded([tmp_path / "select-toy-r-s1.npz"], "toy"), [0.5], 2, "toy")
    assert split["toy_split_share_0.5_true_share"] == pytest.approx(0.5, abs=0.01)
    assert split["toy_split_share_0.5_estimated_share"] == pytest.approx(0.5, abs=0.05)
    assert abs(split["toy_split_share_natural_gain"]) < 0.5  # no shift: (nearly) nothing moves
