"""``--adapt-prior`` (label shift) measured on the runs a ``quality.py`` call left under runs/bench-quality.

KLUE-RE's labelled test has twice the training file's share of ``no_relation`` (60% against 30%); the option
re-estimates a file's label shares from its unlabelled predictions and re-weights the class posteriors (the
outputs mapped back by the loss the run trained with: RE's focal loss does not output posteriors). Whether to
use it is decided on the training file only:

- ``select`` runs (``quality.py --phase select``, 10% of the training file held out per seed): each run's
  held-out rows are predicted once, then resampled (``--draws`` times, without replacement) so that the training
  file's most frequent label has each share of ``--shares`` (the held-out rows as they are: the natural share,
  no shift), and scored plain and adapted. The option is for a file whose label mix differs from training, so it
  must gain at every shifted share and lose nothing without a shift.
- ``report`` runs (trained on the whole training file): the test file, plain and adapted, each run and the
  ensemble of all of them (their mean probabilities; adapted once, from their mean training shares).

Every score is also given for EM run on the outputs as they are (``*_uncorrected_*``), to show what the map does.
``--save-probs DIR`` keeps every run's outputs for analysis without the models.

    python benchmarks/quality.py --phase select --datasets klue_re --variants R --jobs 3
    python benchmarks/quality.py --phase report --datasets klue_re --recipes R --jobs 3
    python benchmarks/label_shift.py --recipe R        # both phases' runs of recipe R, seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from common import ROOT, write_results


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}


def resample(gold: np.ndarray, label: int, share: float, rng) -> np.ndarray:
    """Row indices of a subsample without replacement in which ``label`` has ``share`` of the rows: every row of
    the side that is short kept, the other side cut down at random."""
    mine, others = np.flatnonzero(gold == label), np.flatnonzero(gold != label)
    if share * len(others) >= (1 - share) * len(mine):  # too few of the label: keep them all, cut the others
        keep_others = int(round(len(mine) * (1 - share) / share))
        return np.sort(np.concatenate([mine, rng.choice(others, keep_others, replace=False)]))
    keep_mine = int(round(len(others) * share / (1 - share)))
    return np.sort(np.concatenate([rng.choice(mine, keep_mine, replace=False), others]))


def scores(task, probs: np.ndarray, gold: np.ndarray, prior: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(plain score, adapted score, score of EM run on the outputs as they are, the adapted shares) of ``probs``
    (the task's outputs) under the task's primary metric. ``--adapt-prior`` adapts ``task.posteriors`` of the
    outputs; the uncorrected figure shows what that map is for (focal loss's outputs are not posteriors)."""
    from kluekit.labelshift import adapt_prior

    adapted, shares, _ = adapt_prior(task.posteriors(probs), prior)
    raw = adapt_prior(probs, prior)[0]
    metric = task.primary_metric
    return (task.metrics(probs, gold)[metric], task.metrics(adapted, gold)[metric], task.metrics(raw, gold)[metric],
            shares)


def save_probs(folder: Path | None, name: str, probs: np.ndarray, gold: np.ndarray, prior: np.ndarray) -> None:
    """``--save-probs``: one run's outputs, gold ids and training shares, for analysis without the models."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / f"{name}.npz", probs=probs.astype(np.float32), gold=gold, prior=prior)


def summarise(figures: dict, name: str, cell: dict) -> None:
    """Mean and spread of a cell's plain, adapted and uncorrected (EM on the outputs as they are) scores."""
    figures.update({f"{name}_{k}_{s}": v for k in ("plain", "adapted", "uncorrected")
                    for s, v in spread(cell[k]).items()})
    figures[f"{name}_gain"] = round(statistics.mean(cell["adapted"]) - statistics.mean(cell["plain"]), 2)


def select_figures(runs: list[Path], shares: list[float], draws: int, dataset: str, keep: Path | None) -> dict:
    import quality
    from kluekit.predictor import Predictor

    cells: dict[str, dict[str, list]] = {}
    for run in runs:
        job = json.loads(Path(f"{run}.job.json").read_text())
        path, _ = quality.held_out_file(job, run / "label-shift")
        predictor = Predictor(run, progress=False)
        task, prior = predictor.task, predictor.task.train_prior
        examples = predictor.read(path, require_labels=True)
        probs, gold = predictor.predict(examples), task.gold(examples)
        save_probs(keep, run.name, probs, gold, prior)
        label = int(np.argmax(prior))
        own = json.loads((run / "metrics.json").read_text())["history"][-1][task.primary_metric]
        if abs(task.metrics(probs, gold)[task.primary_metric] - own) > 0.3:  # bf16 scoring both times
            raise SystemExit(f"{run}: held-out split rebuilt wrong ({task.metrics(probs, gold)[task.primary_metric]:.2f}"
                             f" here, {own:.2f} in the run's last evaluation)")
        for share in ["natural", *shares]:
            picks = [np.arange(len(gold))] if share == "natural" else \
                [resample(gold, label, share, np.random.default_rng(draw)) for draw in range(draws)]
            cell = cells.setdefault(str(share), {"plain": [], "adapted": [], "uncorrected": [], "estimated": [],
                                                 "true": []})
            for rows in picks:
                plain, adapted, uncorrected, estimated = scores(task, probs[rows], gold[rows], prior)
                cell["plain"].append(plain)
                cell["adapted"].append(adapted)
                cell["uncorrected"].append(uncorrected)
                cell["estimated"].append(float(estimated[label]))
                cell["true"].append(float((gold[rows] == label).mean()))
        print(f"{run.name}: held-out {len(gold)} rows, {task.labels[label]} {prior[label]:.2f} in training", flush=True)
    figures = {"shifted_label_train_share": round(float(prior[label]), 4), "shifted_label": task.labels[label]}
    for share, cell in cells.items():
        name = f"{dataset}_split_share_{share}"
        summarise(figures, name, cell)
        figures[f"{name}_true_share"] = round(statistics.mean(cell["true"]), 3)
        figures[f"{name}_estimated_share"] = round(statistics.mean(cell["estimated"]), 3)
        print(f"split, {share} share: plain {figures[f'{name}_plain_mean']:.2f} adapted "
              f"{figures[f'{name}_adapted_mean']:.2f} ({figures[f'{name}_gain']:+.2f}; uncorrected "
              f"{figures[f'{name}_uncorrected_mean']:.2f}); share {figures[f'{name}_true_share']:.3f}, estimated "
              f"{figures[f'{name}_estimated_share']:.3f}", flush=True)
    return figures


def report_figures(runs: list[Path], test: str, dataset: str, keep: Path | None) -> dict:
    from kluekit.labelshift import adapt_prior
    from kluekit.predictor import Predictor

    cell = {"plain": [], "adapted": [], "uncorrected": []}
    outputs, posteriors, priors = [], [], []
    for run in runs:
        predictor = Predictor(run, progress=False)
        task = predictor.task
        examples = predictor.read(test, require_labels=True)
        probs, gold = predictor.predict(examples), task.gold(examples)
        save_probs(keep, run.name, probs, gold, task.train_prior)
        for key, value in zip(("plain", "adapted", "uncorrected"), scores(task, probs, gold, task.train_prior)):
            cell[key].append(value)
        outputs.append(probs)
        posteriors.append(task.posteriors(probs))
        priors.append(task.train_prior)
        print(f"{run.name}: test plain {cell['plain'][-1]:.2f} adapted {cell['adapted'][-1]:.2f} (uncorrected "
              f"{cell['uncorrected'][-1]:.2f})", flush=True)
    name = f"{dataset}_test"
    figures: dict = {}
    summarise(figures, name, cell)
    for key in ("plain", "adapted"):
        figures[f"{name}_{key}_per_seed"] = " ".join(f"{v:.2f}" for v in cell[key])
    figures[f"gain_adapt_prior_{name}"] = figures.pop(f"{name}_gain")
    # the ensemble as `kluekit ensemble` builds it: the mean outputs; adapted, the mean posteriors, adapted once
    mean_prior = np.mean(priors, axis=0)
    adapted, shares, _ = adapt_prior(np.mean(posteriors, axis=0), mean_prior)
    metric, label, size = task.primary_metric, int(np.argmax(mean_prior)), len(runs)
    p, a = task.metrics(np.mean(outputs, axis=0), gold)[metric], task.metrics(adapted, gold)[metric]
    figures.update({f"{name}_ensemble{size}_plain": round(p, 2), f"{name}_ensemble{size}_adapted": round(a, 2),
                    f"{name}_true_share": round(float((gold == label).mean()), 3),
                    f"{name}_ensemble_estimated_share": round(float(shares[label]), 3)})
    print(f"test ensemble of {size}: plain {p:.2f} adapted {a:.2f}; {task.labels[label]} share "
          f"{(gold == label).mean():.3f}, estimated {shares[label]:.3f}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="the quality.py recipe (variant) whose runs are read")
    parser.add_argument("--dataset", default="klue_re", help="the quality.py data set (default klue_re)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--work", default=str(ROOT / "runs/bench-quality"), help="where quality.py left its runs")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.45, 0.6, 0.75],
                        help="shares of the training file's most frequent label to resample the held-out rows to")
    parser.add_argument("--draws", type=int, default=5, help="resamples per share and run")
    parser.add_argument("--name", default="label_shift")
    parser.add_argument("--save-probs", metavar="DIR", help="also write each run's outputs, gold ids and training "
                                                             "shares to DIR/<run>.npz")
    args = parser.parse_args()
    if any(not 0 < s < 1 for s in args.shares):
        parser.error("--shares: each must be between 0 and 1")
    work, keep = Path(args.work), Path(args.save_probs) if args.save_probs else None

    def runs(phase: str) -> list[Path]:
        found = sorted(work.glob(f"{phase}-{args.dataset}-{args.recipe}-s*"))  # -s<seed>, or -s<seed>-on<split>
        return [p for p in found if p.is_dir() and p.name.split("-s")[-1].split("-")[0] in map(str, args.seeds)]

    selected, reported = runs("select"), runs("report")
    if not selected and not reported:
        raise SystemExit(f"{work}: no select or report runs of {args.dataset} {args.recipe} (seeds {args.seeds})")
    figures = {"recipe": args.recipe, "seeds": args.seeds, "select_runs": len(selected), "report_runs": len(reported),
               "draws": args.draws}
    if selected:
        figures.update(select_figures(selected, args.shares, args.draws, args.dataset, keep))
    if reported:  # the test file the runs' quality.py job named
        test = json.loads(Path(f"{reported[0]}.job.json").read_text())["files"]["test"]
        figures.update(report_figures(reported, test, args.dataset, keep))
    write_results("label_shift.py", args.name, figures)


if __name__ == "__main__":
    main()
