"""``--adapt-prior`` (label shift) measured on the runs a ``quality.py`` call left under runs/bench-quality.

KLUE-RE's labelled test has twice the training file's share of ``no_relation`` (60% against 30%). ``--adapt-prior``
estimates the share of the training file's most frequent label in a file from that label's probability, calibrated
on the run's dev set (Platt scaling), and re-weights the class posteriors (the outputs mapped back by the loss the
run trained with). Whether to use it is decided on the training file only:

- ``select`` runs (``quality.py --phase select``, 10% of the training file held out per seed): each run's
  held-out rows are predicted once and cut in two halves; the calibration is fitted on one half (as training fits
  it on the dev set) and the other half is resampled (``--draws`` times, without replacement) so that the label
  has each share of ``--shares`` (the half as it is: the natural share, no shift), then scored plain and adapted;
  and the other way round. The option is for a file whose label mix differs from training, so it must gain at every
  shifted share and lose nothing without a shift.
- ``select`` runs on the test file (``--test-select``): those runs, trained with their held-out split as the dev
  set and so calibrated there, predict the test file: plain against adapted, each run and their ensemble (adapted
  once, as ``kluekit ensemble --adapt-prior``).
- ``report`` runs (trained on the whole training file, no dev set, so no calibration): the test file, plain, and
  the other estimates below.

Besides plain and adapted, each score is given for EM over every label's share on the posteriors (``full_em``: the
option before 2026-12-04), on the outputs as they are (``uncorrected``: what the map from focal loss is for), and
for the posteriors re-weighted to the true shares (``oracle``: it reads the labels, so no prediction can; the most
an exact estimate of the shares could give). ``--save-probs DIR`` keeps every run's outputs, ``--from-probs DIR``
scores saved outputs without the models.

    python benchmarks/quality.py --phase select --datasets klue_re --variants R --jobs 3
    python benchmarks/quality.py --phase report --datasets klue_re --recipes R --jobs 3
    python benchmarks/label_shift.py --recipe R --test-select   # both phases' runs of recipe R, seeds 1 2 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np

from common import ROOT, write_results

KINDS = ("plain", "adapted", "full_em", "uncorrected", "oracle")


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


def scores(task, probs: np.ndarray, gold: np.ndarray, prior: np.ndarray, calibration: dict | None) -> tuple[dict, float]:
    """({kind: score} under the task's primary metric, the adapted share of the calibrated label) for ``probs``
    (the task's outputs); no ``adapted`` (and share None) without a ``calibration``."""
    from kluekit.labelshift import adapt_mean, adapt_prior, class_shares, reweight

    posteriors = task.posteriors(probs)
    outputs = {"plain": probs, "full_em": adapt_prior(posteriors, prior)[0], "uncorrected": adapt_prior(probs, prior)[0],
               "oracle": reweight(posteriors, prior, class_shares(gold, len(prior)))}
    share = None
    if calibration is not None:
        outputs["adapted"], shares, _ = adapt_mean([posteriors], [prior], [calibration], [1.0])
        share = float(shares[calibration["label"]])
    return {kind: task.metrics(values, gold)[task.primary_metric] for kind, values in outputs.items()}, share


def summarise(figures: dict, name: str, cell: dict) -> None:
    """Mean and spread of each kind of score in ``cell``, and the adapted mean's gain over the plain one."""
    figures.update({f"{name}_{k}_{s}": v for k in KINDS if cell.get(k) for s, v in spread(cell[k]).items()})
    if cell.get("adapted"):
        figures[f"{name}_gain"] = round(statistics.mean(cell["adapted"]) - statistics.mean(cell["plain"]), 2)


def predicted(runs: list[Path], phase: str, keep: Path | None, test: bool = False) -> list[tuple]:
    """(run name, task, outputs, gold ids, training shares, calibration) of each run: for ``select`` runs on their
    held-out rows (checked against the run's own last evaluation), or with ``test`` and for ``report`` runs on the
    test file their job named; ``keep``: each also saved to keep/<name>.npz."""
    import quality
    from kluekit.predictor import Predictor

    items = []
    for run in runs:
        job = json.loads(Path(f"{run}.job.json").read_text())
        held_out = phase == "select" and not test
        path = quality.held_out_file(job, run / "label-shift")[0] if held_out else job["files"]["test"]
        predictor = Predictor(run, progress=False)
        task = predictor.task
        examples = predictor.read(path, require_labels=True)
        probs, gold = predictor.predict(examples), task.gold(examples)
        if held_out:
            own = json.loads((run / "metrics.json").read_text())["history"][-1][task.primary_metric]
            here = task.metrics(probs, gold)[task.primary_metric]
            if abs(here - own) > 0.3:  # bf16 scoring both times
                raise SystemExit(f"{run}: held-out split rebuilt wrong ({here:.2f} here, {own:.2f} in the run's last "
                                 "evaluation)")
        name = run.name.replace("select-", "selecttest-", 1) if test else run.name
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            record = {"task": task.name, "options": dataclasses.asdict(task.options), "labels": task.labels,
                      "calibration": task.calibration}
            np.savez_compressed(keep / f"{name}.npz", probs=probs.astype(np.float32), gold=gold,
                                prior=task.train_prior, record=json.dumps(record))
        items.append((name, task, probs, gold, task.train_prior, task.calibration))
    return items


def loaded(files: list[Path], dataset: str) -> list[tuple]:
    """``predicted``'s items from saved .npz files. A file saved without its run's task record (before
    2026-12-04) gets the task of the data set's quality.py options, and no calibration."""
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
        fields = {f.name for f in dataclasses.fields(task_class.Options)}
        task = task_class(task_class.Options(**{k: v for k, v in record["options"].items() if k in fields}),
                          labels=record["labels"])
        task.train_prior, task.calibration = data["prior"], record.get("calibration")
        items.append((path.stem, task, data["probs"].astype(np.float64), data["gold"], data["prior"],
                      task.calibration))
    return items


def select_figures(items: list[tuple], shares: list[float], draws: int, dataset: str) -> dict:
    from kluekit.labelshift import fit_calibration

    cells: dict[str, dict[str, list]] = {}
    for name, task, probs, gold, prior, _ in items:
        label = int(np.argmax(prior))
        halves = np.array_split(np.random.default_rng(0).permutation(len(gold)), 2)
        for fit, scored_half in (halves, halves[::-1]):  # calibrated on one half, scored on the other
            calibration = fit_calibration(task.posteriors(probs[fit]), gold[fit], label)
            rows_of, gold_of = probs[scored_half], gold[scored_half]
            for share in ["natural", *shares]:
                picks = [np.arange(len(gold_of))] if share == "natural" else \
                    [resample(gold_of, label, share, np.random.default_rng(draw)) for draw in range(draws)]
                cell = cells.setdefault(str(share), {k: [] for k in (*KINDS, "estimated", "true")})
                for rows in picks:
                    scored, estimated = scores(task, rows_of[rows], gold_of[rows], prior, calibration)
                    for kind, value in scored.items():
                        cell[kind].append(value)
                    cell["estimated"].append(estimated)
                    cell["true"].append(float((gold_of[rows] == label).mean()))
        print(f"{name}: held-out {len(gold)} rows in two halves, {task.labels[label]} {prior[label]:.2f} in training",
              flush=True)
    figures = {"shifted_label_train_share": round(float(prior[label]), 4), "shifted_label": task.labels[label]}
    for share, cell in cells.items():
        name = f"{dataset}_split_share_{share}"
        summarise(figures, name, cell)
        figures[f"{name}_true_share"] = round(statistics.mean(cell["true"]), 3)
        figures[f"{name}_estimated_share"] = round(statistics.mean(cell["estimated"]), 3)
        print(f"split, {share} share: plain {figures[f'{name}_plain_mean']:.2f} adapted "
              f"{figures[f'{name}_adapted_mean']:.2f} ({figures[f'{name}_gain']:+.2f}; full EM "
              f"{figures[f'{name}_full_em_mean']:.2f}, oracle {figures[f'{name}_oracle_mean']:.2f}); share "
              f"{figures[f'{name}_true_share']:.3f}, estimated {figures[f'{name}_estimated_share']:.3f}", flush=True)
    return figures


def test_figures(items: list[tuple], name: str) -> dict:
    """Each run on the test file, and their ensemble (the mean outputs; adapted as ``kluekit ensemble``)."""
    from kluekit.labelshift import adapt_mean

    cell: dict[str, list] = {k: [] for k in KINDS}
    for run, task, probs, gold, prior, calibration in items:
        scored, _ = scores(task, probs, gold, prior, calibration)
        for kind, value in scored.items():
            cell[kind].append(value)
        print(f"{run}: test " + " ".join(f"{k} {v:.2f}" for k, v in scored.items()), flush=True)
    figures: dict = {}
    summarise(figures, name, cell)
    for key in ("plain", "adapted"):
        if cell[key]:
            figures[f"{name}_{key}_per_seed"] = " ".join(f"{v:.2f}" for v in cell[key])
    if f"{name}_gain" in figures:
        figures[f"gain_adapt_prior_{name}"] = figures.pop(f"{name}_gain")
    size, metric = len(items), task.primary_metric
    label = int(np.argmax(np.mean([item[4] for item in items], axis=0)))
    figures[f"{name}_ensemble{size}_plain"] = round(task.metrics(np.mean([i[2] for i in items], axis=0), gold)[metric], 2)
    figures[f"{name}_true_share"] = round(float((gold == label).mean()), 3)
    if all(item[5] is not None for item in items):
        adapted, shares, _ = adapt_mean([item[1].posteriors(item[2]) for item in items], [item[4] for item in items],
                                        [item[5] for item in items], np.ones(size))
        figures[f"{name}_ensemble{size}_adapted"] = round(task.metrics(adapted, gold)[metric], 2)
        figures[f"{name}_ensemble_estimated_share"] = round(float(shares[label]), 3)
    print(f"{name}: ensemble of {size} plain {figures[f'{name}_ensemble{size}_plain']:.2f}, adapted "
          f"{figures.get(f'{name}_ensemble{size}_adapted', float('nan')):.2f}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="the quality.py recipe (variant) whose runs are read")
    parser.add_argument("--dataset", default="klue_re", help="the quality.py data set (default klue_re)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--work", default=str(ROOT / "runs/bench-quality"), help="where quality.py left its runs")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.45, 0.6, 0.75],
                        help="shares of the training file's most frequent label to resample the held-out rows to")
    parser.add_argument("--draws", type=int, default=5, help="resamples per share, half and run")
    parser.add_argument("--test-select", action="store_true",
                        help="also predict the test file with the select runs (calibrated on their held-out split)")
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
        wanted = (lambda p: p.is_file()) if args.from_probs else (lambda p: p.is_dir())
        return [p for p in found if wanted(p) and p.name.removesuffix(".npz").split("-s")[-1].split("-")[0]
                in map(str, args.seeds)]

    def items(phase: str, found: list[Path], test: bool = False) -> list[tuple]:
        return loaded(found, args.dataset) if args.from_probs else predicted(found, phase, keep, test)

    selected, reported = runs("select"), runs("report")
    on_test = runs("selecttest") if args.from_probs else (selected if args.test_select else [])
    if not selected and not reported:
        raise SystemExit(f"{work}: no select or report runs of {args.dataset} {args.recipe} (seeds {args.seeds})")
    figures = {"recipe": args.recipe, "seeds": args.seeds, "select_runs": len(selected), "report_runs": len(reported),
               "draws": args.draws}
    if selected:
        figures.update(select_figures(items("select", selected), args.shares, args.draws, args.dataset))
    if on_test:
        figures.update(test_figures(items("select", on_test, test=True), f"{args.dataset}_test_select_runs"))
    if reported:
        figures.update(test_figures(items("report", reported), f"{args.dataset}_test"))
    if args.from_probs:
        figures["outputs_from"] = str(work)
    write_results("label_shift.py", args.name, figures, device=args.ran_on)


if __name__ == "__main__":
    main()
