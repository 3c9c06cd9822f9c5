#!/bin/bash
# A GPU smoke run of --teacher (knowledge distillation) on RE, not a measurement of its quality: one 2-epoch teacher
# on the first 4,000 rows of the shared KLUE-RE train, a student of it and its plain twin (same seed, R-Drop on both),
# each scored on the first 1,000 rows of the labelled test; prints each run's dev micro F1 per epoch, whether it ran
# with CUDA graphs, its precision and its training seconds. Data and model from .carry/ (benchmarks/device_call.sh):
#   bash benchmarks/device_call.sh smoke 240 bash benchmarks/distill_smoke.sh
set -e
export PYTHONPATH=src
d=${SHARED:-.carry}/data/klue_re
python -c "import pandas as p; p.read_csv('$d/train_partial_union.csv').head(4000).to_csv('runs/tr.csv', index=False); \
p.read_csv('$d/boostcamp_test_data_with_labels.csv').head(1000).to_csv('runs/dv.csv', index=False)"
o="--model ${SHARED:-.carry}/models/e5-small-ko --train runs/tr.csv --dev runs/dv.csv --entity-style typed --loss focal
   --max-length 256 --epochs 2 --learning-rate 1e-4"
python -m kluekit train re $o --output-dir runs/t1 --seed 1
python -m kluekit train re $o --output-dir runs/s1 --seed 2 --teacher runs/t1 --rdrop 1
python -m kluekit train re $o --output-dir runs/p1 --seed 2 --rdrop 1
for r in t1 s1 p1; do
  python -c "import json; m = json.load(open('runs/$r/metrics.json')); i = json.load(open('runs/$r/kluekit.json')); \
print('$r', [round(h['micro_f1'], 2) for h in m['history']], i.get('cuda_graphs'), i.get('precision'), m.get('train_seconds'))"
done
