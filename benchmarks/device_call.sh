#!/bin/bash
# One self-contained call on the GPU machine (each call may land on a fresh machine):
#   here:   git archive HEAD | gzip > .carry/tree.tgz   (.carry/ also holds models/e5-small-ko and data/<the files>)
#   there:  bash benchmarks/device_call.sh NAME LIMIT_S COMMAND...   (run with carry [".carry"], from the repo root)
# Unpacks the committed tree into /tmp/k (unless there from an earlier call on the same machine), runs COMMAND there
# under LIMIT_S seconds (log: runs/NAME.log), prints the per-run lines of benchmarks/quality.py and the log's end,
# and copies every results file written since the tree was unpacked, and the logs, to $OUT.
# A call stopped by its limit keeps every finished run's result file (quality.py --reuse summarises them).
name=$1; limit=$2; shift 2
if [ ! -d /tmp/k/src ]; then mkdir -p /tmp/k && tar xzf .carry/tree.tgz -C /tmp/k && cp -r .carry /tmp/k/; fi
cd /tmp/k && mkdir -p runs
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
timeout "$limit" "$@" > "runs/$name.log" 2>&1; echo $? > "runs/$name.rc"
echo "rc $(cat "runs/$name.rc")"
grep -h "seed [0-9]*:" "runs/$name.log" | tail -n 60
tail -n 3 "runs/$name.log"
find benchmarks/results -name '*.json' -newer .carry/tree.tgz -exec cp {} "$OUT/" \;
shopt -s nullglob
tar czf "$OUT/logs-$name.tgz" runs/*.log runs/bench-quality/*.log runs/bench-quality/*.result.json \
    runs/bench-quality/*/ensemble-report/metrics.json
