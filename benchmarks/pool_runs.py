"""The runs of several calls of one benchmark, pooled: every ``*_per_seed`` and ``*_per_group`` list that all the
given results files hold is joined, with its mean and spread (sample standard deviation, as the benchmarks
write), for a figure whose runs did not fit one device call. An ensemble's gain over the single runs
(``<name>_ensemble<N>_gain``) is the pooled ensembles' mean less the pooled single runs' mean. The files must come
from one device and one model, with no seed in two of them::

    python benchmarks/pool_runs.py quality_re_ensemble quality_re_ensemble_789 --name quality_re_ensemble_pooled
"""

from __future__ import annotations

import argparse
import json
import re
import statistics

from common import ROOT, write_results

LISTS = ("_per_seed", "_per_group")


def pool(results: list[dict]) -> dict:
    """The pooled figures of ``results`` (loaded results files); SystemExit when they cannot be pooled."""
    for key in ("device", "model"):
        values = {r.get(key) for r in results}
        if len(values) > 1:
            raise SystemExit(f"the files differ in {key}: {', '.join(sorted(map(str, values)))}")
    seeds = [seed for r in results for seed in r.get("seeds", [])]
    if len(seeds) != len(set(seeds)):
        raise SystemExit(f"a seed is in two of the files: {' '.join(map(str, seeds))}")
    keys = [k for k in results[0] if k.endswith(LISTS) and all(k in r for r in results[1:])]
    if not keys:
        raise SystemExit("the files share no *_per_seed or *_per_group list")
    figures, means = {"model": results[0].get("model"), "seeds": seeds}, {}
    for key in keys:
        stem = key[: key.rindex("_per_")]
        values = [float(v) for r in results for v in str(r[key]).split()]
        means[stem] = statistics.mean(values)
        figures[f"{stem}_mean"] = round(means[stem], 2)
        figures[f"{stem}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else 0.0
        figures[key] = " ".join(f"{v:.2f}" for v in values)
    for stem in [stem for stem in means if re.search(r"_ensemble\d+$", stem)]:
        single = re.sub(r"_ensemble\d+$", "", stem)
        if single in means:  # from the unrounded means
            figures[f"{stem}_gain"] = f"{means[stem] - means[single]:+.2f}"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="results files to pool (names under benchmarks/results, no .json)")
    parser.add_argument("--name", required=True, help="the pooled results file's name")
    args = parser.parse_args()
    if len(args.names) < 2:
        parser.error("give at least two results files")
    paths = [ROOT / "benchmarks/results" / f"{name}.json" for name in args.names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"no results file {', '.join(missing)}")
    results = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    figures = {**pool(results), "pooled": " ".join(args.names),
               "pooled_commands": " ; ".join(r.get("command", "?") for r in results)}
    write_results("pool_runs.py", args.name, figures, device=results[0].get("device"))


if __name__ == "__main__":
    main()
