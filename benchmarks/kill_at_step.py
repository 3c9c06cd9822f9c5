"""Run ``kluekit`` and SIGKILL the process at a given optimizer step, as a crash or ``kill -9`` would.

    python benchmarks/kill_at_step.py 12 train sts --model ... --output-dir runs/x --eval-steps 8
    python benchmarks/kill_at_step.py 2 --when checkpoint train sts ...   # killed while writing the 2nd checkpoint

``--when step`` (default): right before optimizer step N+1 (N steps done). ``--when checkpoint``: in the middle
of writing the N-th resume checkpoint (after its model file, before the rest), to check that a kill there
leaves the previous checkpoint usable. Used by tests/test_faults.py and benchmarks/resume_check.py.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without installing


def main() -> None:
    args = sys.argv[1:]
    count = int(args.pop(0))
    when = "step"
    if args[:1] == ["--when"]:
        when, args = args[1], args[2:]
    import torch

    from kluekit import cli
    from kluekit.engine import trainer

    seen = {"n": 0}
    if when == "step":
        real_step = trainer.Trainer.optimizer_step

        def optimizer_step(self):
            if self.state["global_step"] >= count:
                os.kill(os.getpid(), signal.SIGKILL)
            real_step(self)

        trainer.Trainer.optimizer_step = optimizer_step
    else:
        real_save = torch.save

        def save(obj, f, *a, **kw):
            real_save(obj, f, *a, **kw)
            if str(getattr(f, "name", f)).endswith("model.pt"):
                seen["n"] += 1
                if seen["n"] >= count:
                    os.kill(os.getpid(), signal.SIGKILL)

        torch.save = save
    sys.exit(cli.main(args))


if __name__ == "__main__":
    main()
