"""``python -m kluekit`` (and ``torchrun -m kluekit`` / ``accelerate launch -m kluekit`` for several GPUs)."""

import sys

from .cli import main

sys.exit(main())
