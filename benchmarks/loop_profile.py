"""Where does a real training run's step go: host or GPU, and which part of the host's work?

    python benchmarks/loop_profile.py --shared .carry [--task sts --train korsts/sts-train.tsv] [-- TRAIN OPTIONS]

Runs ``kluekit train`` in this process (the defaults, or the options after ``--``) and, over steps
``--start`` to ``--start + --steps`` of the first epoch, (1) times the steps without a profiler, then (2) profiles
the next as many steps with ``torch.profiler``: the GPU's busy time per step (the union of its kernels' and
copies' intervals) against the wall time per step shows whether the host or the GPU sets the pace, and the host
time of each part of the loop (``record_function`` ranges put around the trainer's methods here: batch = the
DataLoader's collate and pinning, to_device, train_step = the graph replay, optimizer_step = clip + AdamW +
schedule + zero_grad) shows what the host spends it on; the GPU's kernels per step and their time by family
(matrix products, attention, copies and dtype casts, norms, reductions, the optimizer, other elementwise) show
what the GPU spends its time on. Writes benchmarks/results/loop_profile.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED, write_results

from kluekit import cli
from kluekit.engine import trainer as trainer_module

PARTS = ("batch", "to_device", "train_step", "optimizer_step", "log_step")
GRAPH_KEYS = ("cuda_graph_shapes", "cuda_graphs_failed", "cuda_graph_update", "train_seconds")


def busy_ms(events) -> float:
    """The union of the GPU intervals (kernels, copies, sets) of profiler ``events``, in ms."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events
                   if e.device_type == torch.autograd.DeviceType.CUDA)
    total, end = 0, None
    for start, stop in spans:
        if end is None or start > end:
            total, end = total + (stop - start), stop
        elif stop > end:
            total, end = total + (stop - end), stop
    return total / 1000


# kernel families by name, first match wins (cuBLAS's H100/H200 GEMMs are named nvjet_*, casts *copy_kernel*)
KERNEL_FAMILIES = (("attention", ("flash", "fmha", "attention")), ("gemm", ("gemm", "nvjet", "cutlass", "xmma")),
                   ("copy_or_cast", ("copy",)), ("norm", ("layer_norm", "layernorm", "gammabeta")),
                   ("reduce", ("reduce",)), ("optimizer", ("multi_tensor", "adam")), ("elementwise", ("elementwise",)))


def kernel_family(name: str) -> str:
    name = name.lower()
    return next((family for family, parts in KERNEL_FAMILIES if any(part in name for part in parts)), "other")


def kernel_figures(events, steps: int) -> dict:
    """GPU kernels (copies and sets included) per step, and their time per step by family."""
    # a record_function range around GPU work also shows as a GPU event spanning it (train_step's is the whole step)
    gpu = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA and e.name not in PARTS]
    families = [kernel_family(e.name) for e in gpu]
    figures = {"gpu_kernels_per_step": round(len(gpu) / steps, 1)}
    for family in [f for f, _ in KERNEL_FAMILIES] + ["other"]:
        mine = [e for e, named in zip(gpu, families) if named == family]
        figures[f"gpu_{family}_kernels_per_step"] = round(len(mine) / steps, 1)
        figures[f"gpu_{family}_ms_per_step"] = round(sum(e.time_range.elapsed_us() for e in mine) / 1000 / steps, 3)
    return figures


def instrument(window: tuple[int, int, int], figures: dict) -> None:
    """Wraps the trainer's methods in ``record_function`` ranges and times/profiles the steps of ``window``
    (start, steps): [start, start+steps) timed plain, [start+steps, start+2*steps) under the profiler."""
    start, steps = window[0], window[1]
    Trainer = trainer_module.Trainer
    state = {"profiler": None, "t0": None}

    def ranged(name, method):
        def wrapper(self, *args, **kwargs):
            with torch.profiler.record_function(name):
                return method(self, *args, **kwargs)
        return wrapper

    for name in ("train_step", "log_step"):
        setattr(Trainer, name, ranged(name, getattr(Trainer, name)))
    plain_step = Trainer.optimizer_step

    def optimizer_step(self):
        with torch.profiler.record_function("optimizer_step"):
            plain_step(self)
        done = self.state["global_step"] + 1  # the trainer counts this step after the call
        if done == start:
            torch.cuda.synchronize()
            state["t0"] = time.perf_counter()
        elif done == start + steps:
            torch.cuda.synchronize()
            figures["step_ms_plain"] = round((time.perf_counter() - state["t0"]) / steps * 1000, 3)
            state["profiler"] = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
            state["profiler"].__enter__()
            state["t0"] = time.perf_counter()
        elif done == start + 2 * steps:
            torch.cuda.synchronize()
            wall = (time.perf_counter() - state["t0"]) / steps * 1000
            state["profiler"].__exit__(None, None, None)
            report(state["profiler"], steps, wall, figures)

    Trainer.optimizer_step = optimizer_step
    loader_next = torch.utils.data.dataloader._BaseDataLoaderIter.__next__

    def next_batch(self):
        with torch.profiler.record_function("batch"):
            return loader_next(self)

    torch.utils.data.dataloader._BaseDataLoaderIter.__next__ = next_batch
    plain_to = torch.Tensor.to
    # the loop moves a batch with a dict comprehension of .to calls: time them as one part per tensor
    torch.Tensor.to = lambda self, *a, **k: _ranged_to(plain_to, self, *a, **k)


def _ranged_to(plain_to, tensor, *args, **kwargs):
    if kwargs.get("non_blocking"):
        with torch.profiler.record_function("to_device"):
            return plain_to(tensor, *args, **kwargs)
    return plain_to(tensor, *args, **kwargs)


def report(profiler, steps: int, wall_ms: float, figures: dict) -> None:
    events = profiler.events()
    figures["step_ms_profiled"] = round(wall_ms, 3)
    figures["gpu_busy_ms_per_step"] = round(busy_ms(events) / steps, 3)
    figures.update(kernel_figures(events, steps))
    host = {}  # a record_function range is listed twice (its CPU range, and its GPU-side annotation with no CPU time)
    for average in profiler.key_averages():
        host[average.key] = max(host.get(average.key, 0.0), average.cpu_time_total)
    for part in PARTS:
        if part in host:
            figures[f"host_{part}_ms_per_step"] = round(host[part] / 1000 / steps, 3)
    table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    print(table)
    gpu_table = profiler.key_averages().table(sort_by="self_cuda_time_total", row_limit=15)
    print(gpu_table)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--task", default="sts")
    parser.add_argument("--train", default="korsts/sts-train.tsv", help="a file under <shared>/data")
    parser.add_argument("--start", type=int, default=60, help="the first timed step (after capture and warm-up)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--name", default="loop_profile")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("loop_profile.py needs a CUDA GPU")
    figures = {"train": args.train, "options": " ".join(extra) or "defaults", "start": args.start, "steps": args.steps}
    instrument((args.start, args.steps, 0), figures)
    with tempfile.TemporaryDirectory() as run:
        code = cli.main(["train", args.task, "--model", f"{args.shared}/models/e5-small-ko", "--train",
                         f"{args.shared}/data/{args.train}", "--output-dir", run, "--overwrite", "--epochs", "1",
                         *extra])
        if not code:  # what the run's record says about its graphs
            record = json.loads((Path(run) / "metrics.json").read_text())
            figures.update({key: record[key] for key in GRAPH_KEYS if key in record})
    if code:
        raise SystemExit(f"kluekit train failed ({code})")
    if "gpu_busy_ms_per_step" in figures:
        figures["gpu_busy_share"] = round(figures["gpu_busy_ms_per_step"] / figures["step_ms_profiled"], 3)
    write_results("loop_profile.py", args.name, figures)


if __name__ == "__main__":
    main()
