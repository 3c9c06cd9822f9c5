"""Resume checkpoints: model, optimizer, scheduler, loss scaler, every random generator and the progress.

A checkpoint is written into ``checkpoint.tmp`` and swapped in whole (the previous one is kept as
``checkpoint.old`` until the new one is in place), so a kill or a full disk at any moment leaves one that
loads. The random state of every process is saved, so a resumed run draws the same dropout masks as the
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..data.io import apply_umask, write_error
from ..errors import KluekitError

CHECKPOINT = "checkpoint"
PROGRESS = "progress.json"


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run: ``checkpoint``, or ``checkpoint.old`` when a kill came
    between the two renames of a swap."""
    for name in (CHECKPOINT, CHECKPOINT + ".old"):
        if (Path(run_dir) / name / PROGRESS).is_file():
            return Path(run_dir) / name
    return None


def read_progress(folder: Path) -> dict:
    """The progress record (stage, step, epoch, position, history) of a checkpoint folder."""
    return json.loads((Path(folder) / PROGRESS).read_text(encoding="utf-8"))


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, parts: dict, progress: dict, rank: int, main: bool, barrier) -> None:
    """Write ``parts`` (name -> object with ``state_dict``; main process only), this process's random state
    and ``progress`` as the run's checkpoint. ``barrier()`` waits for every process."""
    run_dir = Path(run_dir)
    tmp, final, old = run_dir / (CHECKPOINT + ".tmp"), run_dir / CHECKPOINT, run_dir / (CHECKPOINT + ".old")
    try:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        with open(tmp / f"rng-{rank}.pkl", "wb") as handle:
            pickle.dump(rng_state(), handle)
        if main:
            for name, part in parts.items():
                if part is not None:
                    with open(tmp / f"{name}.pt", "wb") as handle:  # a file object: a full disk is an OSError
                        torch.save(part.state_dict(), handle)
            (tmp / PROGRESS).write_text(json.dumps(progress, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            apply_umask(tmp)
        barrier()
    except OSError as error:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(tmp, error) from None
    if main:
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    barrier()


def load_checkpoint(folder: Path, parts: dict, rank: int, device) -> dict:
    """Load ``parts`` and this process's random state from ``folder``; return the saved progress."""
    if not (folder / "model.pt").is_file():
        raise KluekitError(f"--resume: {folder} was written by an older kluekit and cannot be resumed; "
                           "start the run again (--overwrite)")
    for name, part in parts.items():
        path = folder / f"{name}.pt"
        if part is not None and path.is_file():
            part.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    rng = folder / f"rng-{rank}.pkl"
    if rng.is_file():
        with open(rng, "rb") as handle:
            set_rng_state(pickle.load(handle))
    return read_progress(folder)


def remove_checkpoints(run_dir: Path) -> None:
    """Drop the resume checkpoint of a finished run."""
    for name in (CHECKPOINT, CHECKPOINT + ".old", CHECKPOINT + ".tmp"):
        shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
