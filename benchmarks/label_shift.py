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
import dataclasses
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


KINDS = ("plain", "adapted", "uncorrected", "oracle")


def scores(task, probs: np.ndarray, gold: np.ndarray, prior: np.ndarray) -> tuple[dict, np.ndarray]:
    """({kind: score} under the task's primary metric, the adapted shares) for ``probs`` (the task's outputs):
    plain; adapted as ``--adapt-prior`` does (EM on ``task.posteriors`` of the outputs); uncorrected (EM on the
    outputs as they are: what the map is for); oracle (the posteriors re-weighted to the true shares of ``gold``,
    which no prediction knows: the most a perfect estimate of the shares could give)."""
    from kluekit.labelshift import adapt_prior, class_shares

    posteriors = task.posteriors(probs)
    adapted, shares, _ = adapt_prior(posteriors, prior)
    weights = np.where(prior > 0, class_shares(gold, len(prior)) / np.where(prior > 0, prior, 1.0), 1.0)
    oracle = posteriors * weights
    outputs = {"plain": probs, "adapted": adapted, "uncorrected": adapt_prior(probs, prior)[0],
               "oracle": oracle / np.maximum(oracle.sum(axis=1, keepdims=True), 1e-300)}
    return {kind: task.metrics(values, gold)[task.primary_metric] for kind, values in outputs.items()}, shares


def summarise(figures: dict, name: str, cell: dict) -> None:
    """Mean and spread of each kind of score in ``cell``, and the adapted mean's gain over the plain one."""
    figures.update({f"{name}_{k}_{s}": v for k in KINDS for s, v in spread(cell[k]).items()})
    figures[f"{name}_gain"] = round(statistics.mean(cell["adapted"]) - statistics.mean(cell["plain"]), 2)


def predicted(runs: list[Path], phase: str, keep: Path | None) -> list[tuple]:
    """(run name, task, outputs, gold ids, training shares) of each run: for ``select`` runs on their held-out
    rows (checked against the run's own last evaluation), for ``report`` runs on the test file their job named;
    ``keep``: each also saved to keep/<run>.npz."""
    import quality
    from kluekit.predictor import Predictor

    items = []
    for run in runs:
        job = json.loads(Path(f"{run}.job.json").read_text())
        path = quality.held_out_file(job, run / "label-shift")[0] if phase == "select" else job["files"]["test"]
        predictor = Predictor(run, progress=False)
        task = predictor.task
        examples = predictor.read(path, require_labels=True)
        probs, gold = predictor.predict(examples), task.gold(examples)
        if phase == "select":
            own = json.loads((run / "metrics.json").read_text())["history"][-1][task.primary_metric]
            here = task.metrics(probs, gold)[task.primary_metric]
            if abs(here - own) > 0.3:  # bf16 scoring both times
                raise SystemExit(f"{run}: held-out split rebuilt wrong ({here:.2f} here, {own:.2f} in the run's last "
                                 "evaluation)")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            record = {"task": task.name, "options": dataclasses.asdict(task.options), "labels": task.labels}
            np.savez_compressed(keep / f"{run.name}.npz", probs=probs.astype(np.float32), gold=gold,
                                prior=task.train_prior, record=json.dumps(record))
        items.append((run.name, task, probs, gold, task.train_prior))
    return items


def loaded(files: list[Path], dataset: str) -> list[tuple]:
    """``predicted``'s items from saved .npz files. A file saved without its run's task record (before
    2026-12-04) gets the task of the data set's quality.py options."""
    import quality
    from kluekit.tasks import TASKS

    items = []
    for path in files:
        data = np.load(path)
        if "record" in data:
            record = json.loads(str(data["record"]))
        else:
            spec = quality.DATASETS[dataset]
            flags = dict(zip(spec["options"][::2], spec["options"][1::2]))
            record = {"task": spec["task"], "labels": None,
                      "options": {k[2:].replace("-", "_"): v for k, v in flags.items()}}
        task_class = TASKS[record["task"]]
        fields = {f.name: f.type for f in dataclasses.fields(task_class.Options)}
        options = {k: v for k, v in record["options"].items() if k in fields}
        task = task_class(task_class.Options(**options), labels=record["labels"])
        task.train_prior = data["prior"]
        items.append((path.stem, task, data["probs"].astype(np.float64), data["gold"], data["prior"]))
    return items


def select_figures(items: list[tuple], shares: list[float], draws: int, dataset: str) -> dict:
    cells: dict[str, dict[str, list]] = {}
    for name, task, probs, gold, prior in items:
        label = int(np.argmax(prior))
        for share in ["natural", *shares]:
            picks = [np.arange(len(gold))] if share == "natural" else \
                [resample(gold, label, share, np.random.default_rng(draw)) for draw in range(draws)]
            cell = cells.setdefault(str(share), {k: [] for k in (*KINDS, "estimated", "true")})
            for rows in picks:
                scored, estimated = scores(task, probs[rows], gold[rows], prior)
                for kind, value in scored.items():
                    cell[kind].append(value)
                cell["estimated"].append(float(estimated[label]))
                cell["true"].append(float((gold[rows] == label).mean()))
        print(f"{name}: held-out {len(gold)} rows, {task.labels[label]} {prior[label]:.2f} in training", flush=True)
    figures = {"shifted_label_train_share": round(float(prior[label]), 4), "shifted_label": task.labels[label]}
    for share, cell in cells.items():
        name = f"{dataset}_split_share_{share}"
        summarise(figures, name, cell)
        figures[f"{name}_true_share"] = round(statistics.mean(cell["true"]), 3)
        figures[f"{name}_estimated_share"] = round(statistics.mean(cell["estimated"]), 3)
        print(f"split, {share} share: plain {figures[f'{name}_plain_mean']:.2f} adapted "
              f"{figures[f'{name}_adapted_mean']:.2f} ({figures[f'{name}_gain']:+.2f}; uncorrected "
              f"{figures[f'{name}_uncorrected_mean']:.2f}, oracle {figures[f'{name}_oracle_mean']:.2f}); share "
              f"{figures[f'{name}_true_share']:.3f}, estimated {figures[f'{name}_estimated_share']:.3f}", flush=True)
    return figures


def report_figures(items: list[tuple], dataset: str) -> dict:
    from kluekit.labelshift import adapt_prior

    cell = {k: [] for k in KINDS}
    for name, task, probs, gold, prior in items:
        scored, _ = scores(task, probs, gold, prior)
        for kind, value in scored.items():
            cell[kind].append(value)
        print(f"{name}: test " + " ".join(f"{k} {v:.2f}" for k, v in scored.items()), flush=True)
    name = f"{dataset}_test"
    figures: dict = {}
    summarise(figures, name, cell)
    for key in ("plain", "adapted"):
        figures[f"{name}_{key}_per_seed"] = " ".join(f"{v:.2f}" for v in cell[key])
    figures[f"gain_adapt_prior_{name}"] = figures.pop(f"{name}_gain")
    # the ensemble as `kluekit ensemble` builds it: the mean outputs; adapted, the mean posteriors, adapted once
    mean_prior = np.mean([item[4] for item in items], axis=0)
    posteriors = np.mean([item[1].posteriors(item[2]) for item in items], axis=0)
    adapted, shares, _ = adapt_prior(posteriors, mean_prior)
    metric, label, size = task.primary_metric, int(np.argmax(mean_prior)), len(items)
    p = task.metrics(np.mean([item[2] for item in items], axis=0), gold)[metric]
    a = task.metrics(adapted, gold)[metric]
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
    parser.add_argument("--save-probs", metavar="DIR", help="also write each run's outputs, gold ids, training "
                                                             "shares and task record to DIR/<run>.npz")
    parser.add_argument("--from-probs", metavar="DIR", help="read the runs' DIR/<run>.npz (--save-probs) instead of "
                                                             "predicting with their models (no GPU needed)")
    parser.add_argument("--ran-on", help="with --from-probs: the machine that predicted them (the results' device)")
    args = parser.parse_args()
    if any(not 0 < s < 1 for s in args.shares):
        parser.error("--shares: each must be between 0 and 1")
    if args.from_probs and not args.ran_on:
        parser.error("--from-probs needs --ran-on (the machine that predicted the saved outputs)")
    work, keep = Path(args.from_probs or args.work), Path(args.save_probs) if args.save_probs else None

    def runs(phase: str) -> list[Path]:
        pattern = f"{phase}-{args.dataset}-{args.recipe}-s*" + (".npz" if args.from_probs else "")
        found = sorted(work.glob(pattern))  # -s<seed>, or -s<seed>-on<split>
        keep_run = (lambda p: p.is_file()) if args.from_probs else (lambda p: p.is_dir())
        return [p for p in found if keep_run(p) and p.name.removesuffix(".npz").split("-s")[-1].split("-")[0]
                in map(str, args.seeds)]

    selected, reported = runs("select"), runs("report")
    if not selected and not reported:
        raise SystemExit(f"{work}: no select or report runs of {args.dataset} {args.recipe} (seeds {args.seeds})")
    figures = {"recipe": args.recipe, "seeds": args.seeds, "select_runs": len(selected), "report_runs": len(reported),
               "draws": args.draws}

    def items(phase: str, found: list[Path]) -> list[tuple]:
        return loaded(found, args.dataset) if args.from_probs else predicted(found, phase, keep)

    if selected:
        figures.update(select_figures(items("select", selected), args.shares, args.draws, args.dataset))
    if reported:
        figures.update(report_figures(items("report", reported), args.dataset))
    if args.from_probs:
        figures["outputs_from"] = str(work)
    write_results("label_shift.py", args.name, figures, device=args.ran_on)


if __name__ == "__main__":
    main()
