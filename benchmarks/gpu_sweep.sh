#!/usr/bin/env bash
# The STS variants tried on the GPU machine in one call (see docs/benchmarks.md), from the repo root:
#   bash benchmarks/gpu_sweep.sh DATA_ROOT [NAME:OPTIONS ...]
# DATA_ROOT holds models/e5-small-ko and data/klue_sts (../shared here, a carried copy there).
set -u
root=$1; shift
start=$SECONDS
for spec in "$@"; do
  name=${spec%%:*}; opts=${spec#*:}
  if (( SECONDS - start > ${SWEEP_BUDGET_S:-480} )); then echo "skip $name: time budget spent"; continue; fi
  echo "=== $name: $opts"
  # shellcheck disable=SC2086
  python3 benchmarks/sts_e5.py --name "$name" --model "$root/models/e5-small-ko" \
    --train "$root/data/klue_sts/klue_sts_train.csv" --dev "$root/data/klue_sts/klue-sts-v1.1_dev.json" -- $opts \
    2> >(grep -v -E 'it/s|step/s|batch/s' >&2) | grep -E '"(dev_pearson|dev_f1|train_pairs_per_s|wall_s)"'
done
