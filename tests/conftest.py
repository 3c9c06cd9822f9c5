"""Shared fixtures: paths to ../shared (read in place, never copied) and a tiny model built on the fly."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny_model.py

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
STS_DIR = SHARED / "data" / "klue_sts"


def benchmark_module(name: str):
    """A script of benchmarks/ imported as a module (its folder on sys.path, for its ``common`` import)."""
    import importlib.util

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"{name}_bench", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_path(*parts: str) -> Path:
    """A file under ../shared; skips the test when ../shared is absent (fails instead under CI)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("KLUEKIT_REQUIRE_SHARED"):
            pytest.fail(f"{path} not found, and KLUEKIT_REQUIRE_SHARED is set (CI must not skip)")
        pytest.skip(f"../shared not found: {path} (the shared data sits beside the checkout)")
    return path


@pytest.fixture(scope="session")
def sts_train_csv() -> Path:
    return shared_path("data", "klue_sts", "klue_sts_train.csv")


@pytest.fixture(scope="session")
def sts_dev_json() -> Path:
    return shared_path("data", "klue_sts", "klue-sts-v1.1_dev.json")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, sts_train_csv) -> Path:
    """WordPiece (1000 pieces) trained on KLUE-STS train text + a random 2-layer BERT (hidden 64)."""
    from tiny_model import build_tiny_model, sts_texts

    return build_tiny_model(sts_texts(sts_train_csv), tmp_path_factory.mktemp("tiny") / "model",
                            vocab_size=1000, dropout=0.0)


@pytest.fixture(scope="session")
def tiny_biencoder(tmp_path_factory, tiny_model) -> Path:
    """The tiny BERT as a sentence-transformers bi-encoder (Transformer + mean pooling), saved with ``.save``."""
    from tiny_model import build_tiny_biencoder

    return build_tiny_biencoder(tiny_model, tmp_path_factory.mktemp("tiny") / "biencoder")


@contextlib.contextmanager
def serve_process(args: list[str], log_path: Path, env: dict | None = None):
    """A real ``kluekit serve ARGS --port <free>`` on loopback, ready (its /health answered within 90 s):
    yields ``(process, url)``; stopped with SIGINT on the way out (killed if it has not ended in 30 s)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = shutil.which("kluekit", path=str(Path(sys.executable).parent))
    argv = [command] if command else [sys.executable, "-m", "kluekit.cli"]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w+") as log:
        process = subprocess.Popen([*argv, "serve", *args, "--port", str(port)], stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, Path(log_path).read_text()
                assert time.monotonic() < deadline, "kluekit serve did not become ready in 90 s"
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.3)
            yield process, url
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny model runs fastest on one thread (and several threads crawl on a busy shared machine); a module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def kill_after(trainer, steps: int) -> None:
    """Make ``trainer.fit()`` stop with a KeyboardInterrupt (as Ctrl-C) before its optimizer step ``steps + 1``:
    the run a resume test continues."""
    real_step, calls = trainer.optimizer_step, {"n": 0}

    def dies():
        calls["n"] += 1
        if calls["n"] > steps:
            raise KeyboardInterrupt
        real_step()

    trainer.optimizer_step = dies

