"""CPU inference through ONNX Runtime (``--runtime onnx`` / ``onnx-int8``).

A run's model is exported once with ``torch.onnx.export`` into ``<run>/onnx/model.onnx`` (and, for
``onnx-int8``, quantized with dynamic int8 weights into ``model.int8.onnx``); the export is reused while it
is newer than the run's weights. ``OnnxModel`` stands in for the torch model wherever kluekit calls one::

    tokenizer, model = load_onnx_run_model("runs/sts1", task, "onnx-int8")
    raw = predict_raw(task, model, tokenizer, features, 128, torch.device("cpu"))   # unchanged code path

ONNX Runtime runs on the CPU only (also on a machine with a GPU), with as many threads as torch uses.
Needs ``pip install 'kluekit[onnx]'`` (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .config import RUNTIMES
from .data.io import atomic_path
from .errors import KluekitError, first_line

log = logging.getLogger("kluekit")
CACHE_DIR = "onnx"
INSTALL = "pip install 'kluekit[onnx]'"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def check_runtime(runtime: str, precision: str = "auto") -> None:
    """KluekitError for an unknown runtime, or a --precision that ONNX Runtime does not run."""
    if runtime not in RUNTIMES:
        raise KluekitError(f"--runtime: {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime != "torch" and precision not in ("auto", "fp32"):
        raise KluekitError(f"--precision {precision} cannot be used with --runtime {runtime}: ONNX Runtime runs "
                           "on the CPU in fp32 (onnx-int8: int8 weights); use --precision auto or fp32, "
                           "or --runtime torch")


def require_onnxruntime(export: bool = False):
    """The ``onnxruntime`` module (with ``export``: also what the exporter needs), or a KluekitError saying
    how to install it."""
    try:
        import onnxruntime

        for name in ("onnx", "onnxscript") if export else ():
            importlib.import_module(name)
    except ImportError as error:
        raise KluekitError(f"--runtime onnx needs ONNX Runtime ({first_line(error)}): {INSTALL}") from None
    return onnxruntime


def newest_weights(model_dir: Path) -> int:
    """The newest modification time (ns) of the weight files in ``model_dir`` and its module folders."""
    times = [p.stat().st_mtime_ns for p in Path(model_dir).rglob("*")
             if p.suffix in WEIGHT_SUFFIXES and p.is_file()
             and not {CACHE_DIR, "checkpoint", "logs"} & set(p.relative_to(model_dir).parts[:-1])]
    if not times:
        raise KluekitError(f"--model: {model_dir} holds no model weights (*.safetensors, *.bin)")
    return max(times)


def fresh(path: Path, weights_time: int) -> bool:
    return path.is_file() and path.stat().st_mtime_ns > weights_time


def _write_atomic(path: Path, write) -> None:
    """``write(tmp_path)``, then rename onto ``path`` (a reader never sees half a file; ``data.io.atomic_path``)."""
    with atomic_path(path) as tmp:
        write(tmp)


def writable(folder: Path) -> bool:
    """Whether ``folder`` may be written: the process may (``os.access``) and its mode lets someone (a folder
    marked read-only, e.g. a shared model, stays untouched even for root, whom ``os.access`` always lets)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def export_folder(model_dir: Path) -> Path:
    """Where a model's ONNX export is kept: ``<model_dir>/onnx`` when the model's folder is writable, else
    ``$KLUEKIT_CACHE/onnx/<name>-<hash of its path>`` (default ``~/.cache/kluekit``)."""
    if writable(model_dir):
        return model_dir / CACHE_DIR
    import hashlib

    root = Path(os.environ.get("KLUEKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "kluekit")
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    return root / CACHE_DIR / f"{model_dir.resolve().name}-{key}"


def cached_onnx(model_dir, stem: str, runtime: str, export) -> Path:
    """``<model_dir>/onnx/<stem>.onnx`` (``<stem>.int8.onnx`` for onnx-int8; in a user cache when the model's
    folder is read-only, see :func:`export_folder`), made now unless a copy newer than the weights is there;
    ``export(path)`` writes the fp32 graph."""
    model_dir = Path(model_dir)
    require_onnxruntime()
    weights_time = newest_weights(model_dir)
    name = f"{stem}.int8.onnx" if runtime == "onnx-int8" else f"{stem}.onnx"
    if fresh(model_dir / CACHE_DIR / name, weights_time):  # shipped with the model, or made before
        return model_dir / CACHE_DIR / name
    folder = export_folder(model_dir)
    fp32, wanted = folder / f"{stem}.onnx", folder / name
    if fresh(wanted, weights_time):
        return wanted
    require_onnxruntime(export=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not fresh(fp32, weights_time):
            started = time.perf_counter()
            log.info("exporting %s to ONNX (once; kept in %s)", model_dir, folder)
            try:
                _write_atomic(fp32, export)
            except (KluekitError, OSError):
                raise
            except Exception as error:  # the exporter's own failures: one line, and the way out
                raise KluekitError(f"--runtime {runtime}: exporting {model_dir} to ONNX failed "
                                   f"({type(error).__name__}: {first_line(error)}); use --runtime torch") from None
            log.info("exported in %.1fs", time.perf_counter() - started)
        if wanted != fp32:
            started = time.perf_counter()
            _write_atomic(wanted, lambda tmp: quantize(fp32, tmp))
            log.info("quantized to int8 in %.1fs", time.perf_counter() - started)
    except OSError as error:
        raise KluekitError(f"--runtime {runtime}: cannot write the ONNX export into {folder} "
                           f"({error.strerror or first_line(error)}); make {model_dir} writable or set "
                           "KLUEKIT_CACHE to a writable folder") from None
    return wanted


def quantize(source: Path, target: Path) -> None:
    """Dynamic quantization: int8 weights (QInt8) for MatMul/Gather, activations quantized on the fly."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _DropMessage("pre-processing before quantization")  # its advice to run quant_pre_process, printed
    root.addFilter(quiet)                                       # on the root logger: it gained nothing here
    model = onnx.load(str(source))
    del model.graph.value_info[:]  # the exporter's shape notes: ONNX Runtime infers its own (some failed its check)
    try:
        quantize_dynamic(model, str(target), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(quiet)


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def output_names(output) -> list[str]:
    """The output field names of ``output``: one name, or a tuple of names (e.g. start and end logits)."""
    return [output] if isinstance(output, str) else list(output)


class _Select(torch.nn.Module):
    """Calls ``model`` with tensors named ``names`` (positional, as the exporter traces) and returns its
    ``output`` field (a tuple of fields for several names)."""

    def __init__(self, model, names: list[str], output):
        super().__init__()
        self.model, self.names, self.output = model, names, output

    def forward(self, *tensors):
        outputs = self.model(**dict(zip(self.names, tensors)))
        fields = tuple(getattr(outputs, name) for name in output_names(self.output))
        return fields[0] if isinstance(self.output, str) else fields


def export_onnx(model, inputs: dict[str, torch.Tensor], output, path: Path, sequence_inputs=None) -> None:
    """Export ``model(**inputs).<output>`` to ``path`` with a dynamic batch axis and, for the inputs named in
    ``sequence_inputs`` (default: all), a dynamic sequence axis (the exporter of
    torch.export: the legacy TorchScript one traced transformers' attention masks wrongly), then check that
    the graph gives the torch model's output on ``inputs`` (a warning where it does not)."""
    from torch.export import Dim

    with torch.no_grad():
        outputs = model.eval()(**inputs)
        expected = [getattr(outputs, name).float().numpy() for name in output_names(output)]
    eager_attention(model)
    names = list(inputs)
    batch, sequence = Dim("batch"), Dim("sequence")
    sequence_inputs = names if sequence_inputs is None else list(sequence_inputs)
    shapes = tuple({0: batch, 1: sequence} if n in sequence_inputs else {0: batch} for n in names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Select(model.eval(), names, output), tuple(inputs[n] for n in names), str(path),
                          input_names=names, output_names=output_names(output), dynamic_shapes=(shapes,), dynamo=True,
                          external_data=False, verbose=False)
    got = OnnxModel(path, output).run_all(inputs)
    gap = max(float(np.abs(value - want).max()) for value, want in zip(got, expected))
    if not gap <= 1e-3:
        import transformers

        log.warning("the ONNX export differs from the torch model by up to %.2g on a test batch (torch %s, "
                    "transformers %s): compare its predictions, or use --runtime torch", gap, torch.__version__,
                    transformers.__version__)


def eager_attention(model) -> None:
    """Switch the model's attention to transformers' "eager" implementation before exporting: exported, the
    default SDPA adds NaN checks and selects (Where, IsNaN) around every softmax, 9% of an int8
    forward pass on 2 cores in a development profile; the two give the same logits."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            try:
                module.set_attn_implementation("eager")
            except (AttributeError, ValueError, ImportError):  # older transformers, or a model without the choice
                pass
            return


class OnnxModel:
    """An ONNX Runtime session that answers like a transformers model: ``model(**batch).logits`` (torch, CPU).

    Takes the same torch tensors the torch model takes; ``eval``/``train`` exist so that code written for
    torch models runs unchanged (the graph has no training mode). ``output`` names the graph's output (a tuple
    of names for a graph with several, e.g. a question-answering model's ``start_logits``, ``end_logits``).
    """

    training = False

    def __init__(self, path, output: str = "logits", threads: int | None = None):
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # as torch's OpenMP threads: no spinning
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path, self.output = Path(path), output
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def run(self, batch: dict) -> np.ndarray:
        """The graph's (first) output for a batch of tensors or arrays (``token_type_ids`` default to zeros)."""
        return self.run_all(batch)[0]

    def run_all(self, batch: dict) -> list[np.ndarray]:
        """Every output named by ``output``, in order, for a batch (as ``run``)."""
        unknown = set(batch) - set(self.input_names)
        if unknown:
            raise ValueError(f"{self.path} takes {', '.join(self.input_names)}, not {', '.join(sorted(unknown))}")
        feeds = {}
        for name in self.input_names:
            value = batch.get(name)
            if value is None and name == "token_type_ids":
                value = np.zeros_like(np.asarray(batch["input_ids"]))
            feeds[name] = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value, dtype=np.int64)
        return self.session.run(output_names(self.output), feeds)

    def __call__(self, **batch):
        values = self.run_all(batch)
        return SimpleNamespace(**{name: torch.from_numpy(v) for name, v in zip(output_names(self.output), values)})


def load_onnx_run_model(run_dir, task, runtime: str):
    """Tokenizer and ``OnnxModel`` of a run trained for ``task`` (exported on first use, see ``cached_onnx``);
    the export traces ``task.sample_inputs`` that the model's ``forward`` accepts."""
    from transformers import AutoTokenizer

    from .modeling import check_saved_model

    check_runtime(runtime)
    check_saved_model(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)

    def export(path: Path) -> None:
        _, model = task.load_model(run_dir, torch.device("cpu"))
        accepted = inspect.signature(model.forward).parameters
        inputs = {name: tensor for name, tensor in task.sample_inputs(tokenizer).items() if name in accepted}
        export_onnx(model, inputs, task.onnx_output, path, sequence_inputs=tokenizer.model_input_names)

    return tokenizer, OnnxModel(cached_onnx(run_dir, "model", runtime, export), task.onnx_output)
