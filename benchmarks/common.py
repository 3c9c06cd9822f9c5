"""What every benchmark script shares: kluekit importable from the checkout, the standard options,
and the results file (flat keys, plus ``command`` and ``device``)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing (the GPU machine)


def benchmark_parser(doc: str, train: str, dev: str, name: str) -> argparse.ArgumentParser:
    """--model/--train/--dev (defaults under ../shared), --name, and extra 'kluekit train' options after --."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models/e5-small-ko"))
    parser.add_argument("--train", default=str(SHARED / "data" / train))
    parser.add_argument("--dev", default=str(SHARED / "data" / dev))
    parser.add_argument("--name", default=name, help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("extra", nargs="*", help="more 'kluekit train' options, after --")
    return parser


def kluekit_env(**extra: str) -> dict:
    """The environment for a kluekit subprocess: this checkout's ``src`` first on PYTHONPATH (the caller's
    entries kept after it), plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def kluekit(*args: str, wait: bool = True):
    """Run a kluekit command of this checkout (progress bars off) and wait for it (a failure ends the benchmark
    with its name), or with ``wait=False`` return its process."""
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "kluekit", *args], env=kluekit_env(TQDM_DISABLE="1"))
    if wait and process.wait():
        raise SystemExit(f"kluekit {' '.join(args[:2])} failed ({process.returncode})")
    return process


def steps_in(minutes: float, probe: dict, least: int) -> int:
    """Optimizer steps that fill ``minutes`` of training at the steady speed of a short probe run (its
    metrics.json: the tokens of one step over its tokens/s after the first steps), at least ``least``."""
    per_step = probe["train_tokens_per_s"] * probe["train_seconds"] / probe["steps"] / \
        probe.get("steady_tokens_per_s", probe["train_tokens_per_s"])
    return max(least, int(minutes * 60 / per_step))


def task_texts(shared: Path, sources: dict[str, tuple[str, str | None]]) -> list[str]:
    """The input texts (no labels) of shared task files: ``{path under data/: (task, classify preset or None)}``."""
    from kluekit.tasks import get_task_class

    texts = []
    for rel, (name, preset) in sources.items():
        task_class = get_task_class(name)
        task = task_class(task_class.Options(preset=preset)) if preset else task_class()
        texts += task.texts(task.read(shared / "data" / rel, require_labels=False))
    return texts


def flatten(figures: dict, prefix: str = "") -> dict:
    """Nested dicts as flat keys: {"a": {"b": 1}} -> {"a_b": 1} (results files keep flat keys)."""
    flat = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_results(script: str, name: str, figures: dict, quiet: bool = False, device: str | None = None) -> None:
    """Print the figures and write them, with the command and the device (``device``: the one the figures were
    measured on, where not this machine), to benchmarks/results/<name>.json (``quiet``: write only, e.g. partial
    results after each part of a long run)."""
    from kluekit.rundir import device_name

    figures = {"device": device or device_name(), "command": f"python benchmarks/{script} " + shlex.join(sys.argv[1:]),
               **flatten(figures)}
    out = ROOT / "benchmarks/results" / f"{name}.json"
    out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if quiet:
        return
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    print(f"wrote {out}")
