"""Run options as dataclasses: declared once with help text and allowed values, reused by every verb.

``add_options`` turns a dataclass into argparse options (``--learning-rate``); ``check_options``
validates values at parse time so that a bad option is named with the values it allows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import KluekitError

PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
SCHEDULERS = ["linear", "cosine", "constant"]
RUNTIMES = ["torch", "onnx", "onnx-int8"]
PREDICT_BATCH_HELP = ("prediction batch size (default 0: 128 on a GPU, 16 on the CPU, where smaller batches of similar "
                      "lengths were faster)")
FORMAT_HELP = "input file format (default: detected from the file)"
PRECISION_HELP = "auto: bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU"
RUNTIME_HELP = ("torch, or ONNX Runtime on the CPU (also where a GPU is present): onnx (fp32) or onnx-int8 (dynamic "
                "int8 weights, faster); exported once into <model>/onnx/; needs pip install 'kluekit[onnx]'")


def opt(default, help: str, choices=None, required=False, minimum=None):
    """A dataclass field carrying its CLI help, allowed values and lower bound.

    A list default (``opt([], ...)`` on a ``list[str]`` field) makes an option that takes one or more
    values and may be repeated (``--train a.csv b.tsv --train c.json``); each field gets its own copy.
    """
    metadata = dict(help=help, choices=choices, required=required, minimum=minimum)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def is_list(f: dataclasses.Field) -> bool:
    """A field declared ``list[...]``: its option takes several values."""
    return str(f.type).startswith(("list", "typing.List"))


def default_of(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@dataclass
class TrainConfig:
    """Options of ``kluekit train`` shared by every task."""

    train: list[str] = opt([], "training file(s) (CSV/TSV/JSON; format detected from each file); several are "
                               "concatenated", required=True)
    dev: list[str] = opt([], "dev file(s), evaluated every epoch (or --eval-steps); the first one's primary metric "
                             "keeps the best checkpoint, the others are scored as <file name>/<metric>")
    dev_split: float = opt(0.0, "no --dev: hold out this share of the training examples as the dev set (stratified "
                                "by label where the task has classes; the same split for the same --seed)", minimum=0)
    split_seed: int = opt(0, "seed of the rows --dev-split holds out (0: --seed), e.g. to train several seeds on "
                             "one split and ensemble them on it", minimum=0)
    model: str = opt("klue/roberta-small", "pretrained model: a Hugging Face id or a local directory")
    output_dir: str | None = opt(None, "run directory to write (default: runs/<task>-<date>-<time>)")
    format: str = opt("auto", FORMAT_HELP)
    epochs: float = opt(4.0, "number of training epochs", minimum=0)
    max_steps: int = opt(0, "stop after this many optimizer steps (0: run all epochs)", minimum=0)
    batch_size: int = opt(32, "training batch size per device", minimum=1)
    eval_batch_size: int = opt(128, "batch size for evaluation and prediction", minimum=1)
    learning_rate: float = opt(5e-5, "peak learning rate of AdamW", minimum=0)
    warmup: float = opt(0.1, "warmup: a ratio of all steps if < 1, else a number of steps", minimum=0)
    weight_decay: float = opt(0.01, "AdamW weight decay (not applied to biases and LayerNorm)", minimum=0)
    scheduler: str = opt("linear", "learning-rate schedule after warmup", choices=SCHEDULERS)
    max_grad_norm: float = opt(1.0, "clip gradients to this norm (0: no clipping)", minimum=0)
    layer_decay: float = opt(1.0, "layer-wise learning-rate decay: the top encoder layer trains at the rate x this, "
                                  "each layer below x this once more, the embeddings lowest, the head at the full rate "
                                  "(1: off; usual 0.8 to 0.95)")
    ema_decay: float = opt(0.0, "evaluate and save an exponential moving average of the weights, updated after every "
                                "step with this decay, ramped up over the first steps (0: off; usual 0.999)")
    rdrop: float = opt(0.0, "R-Drop: pass each batch twice (two dropout draws) and add this weight x how far the "
                            "two outputs are apart to the loss; twice the work a step (0: off; usual 0.5 to 5)",
                       minimum=0)
    multi_sample_dropout: int = opt(0, "multi-sample dropout: in training the output layer sees N dropout draws of "
                                       "its input and averages its outputs (0: off; usual 5)", minimum=0)
    teacher: list[str] = opt([], "knowledge distillation: kluekit run(s) of the same task and labels (e.g. an "
                                 "ensemble's seeds) predict the training items once; the model also learns their mean "
                                 "prediction (README: knowledge distillation)")
    distill_weight: float = opt(0.5, "with --teacher: loss = (1 - w) x the task's loss + w x the distance to the "
                                     "teachers' predictions")
    distill_temperature: float = opt(1.0, "with --teacher: both class distributions softened by this temperature "
                                          "(the distance x its square, as Hinton et al.; scores are compared as they are)")
    reinit_layers: int = opt(0, "re-initialise the top N encoder layers before fine-tuning, which helps on small data "
                                "(0: off; usual 1 to 3)", minimum=0)
    max_length: int = opt(128, "maximum tokens per input (pairs are truncated longest-first)", minimum=8)
    seed: int = opt(42, "random seed (same seed, same data, same machine: same result)")
    shuffle: bool = opt(True, "shuffle training data each epoch")
    group_by_length: bool = opt(True, "batch inputs of similar length together (less padding, faster)")
    grad_accum: int = opt(1, "gradient accumulation steps", minimum=1)
    precision: str = opt("auto", PRECISION_HELP, choices=PRECISIONS)
    tf32: bool = opt(False, "run fp32 matrix products on TensorFloat-32 tensor cores (NVIDIA Ampere or newer; "
                            "10-bit mantissa inputs, fp32 sums), as the Trainer's --tf32 does; no effect on CPU")
    cuda_graphs: bool = opt(True, "replay each batch shape's forward and backward as a CUDA graph (one GPU, fp32 or "
                                  "bf16; lengths padded to buckets of 16/32/64): several times faster for small models")
    compile: bool = opt(False, "compile the model's forward with torch.compile (GPU only; a slower start, about a "
                               "minute; a base-size masked LM trained 1.2x faster with it on an H200: "
                               "docs/pretraining.md)")
    eval_steps: int = opt(0, "evaluate (and checkpoint) every N optimizer steps; 0: every epoch", minimum=0)
    patience: int = opt(0, "early stopping: end training once N evaluations in a row did not beat the best dev "
                           "score (the best model is kept; 0: off)", minimum=0)
    resume: bool = opt(False, "continue a killed run from the last checkpoint in --output-dir")
    overwrite: bool = opt(False, "allow writing into a non-empty --output-dir")
    num_workers: int = opt(0, "DataLoader worker processes", minimum=0)
    tensorboard: bool = opt(True, "write TensorBoard logs to <output-dir>/logs")
    folds: int = opt(0, "k-fold: train K models, each scored on the fold it did not see (stratified by label for "
                        "classification), into <output-dir>/fold-<k>, plus the out-of-fold score; 0: off", minimum=0)
    recipe: str | None = opt(None, "a recipe of options shipped with kluekit (src/kluekit/recipes; docs/benchmarks.md "
                                   "says what each was measured to gain); the command line and --config override it")

    def __post_init__(self):
        """The ranges ``opt(minimum=...)`` cannot say: the decays are checked at both ends."""
        if not 0 < self.layer_decay <= 1:
            raise KluekitError(f"--layer-decay: {self.layer_decay} must be in (0, 1] "
                               "(1: off; usual values 0.8 to 0.95)")
        if self.multi_sample_dropout == 1:
            raise KluekitError("--multi-sample-dropout: 1 draw averages nothing; give 2 or more (usual 5), or 0: off")
        if not 0 < self.distill_weight <= 1:
            raise KluekitError(f"--distill-weight: {self.distill_weight} must be in (0, 1] (1: the teachers' "
                               "predictions alone; usual 0.5)")
        if not self.distill_temperature > 0:
            raise KluekitError(f"--distill-temperature: {self.distill_temperature} must be above 0 (usual 1 to 4)")
        if not 0 <= self.ema_decay < 1:
            raise KluekitError(f"--ema-decay: {self.ema_decay} must be in [0, 1) (0: off; usual value 0.999)")


@dataclass
class RunInputConfig:
    """Options shared by the verbs that run a trained model over an input file."""

    model: str = opt(None, "run directory written by 'kluekit train'", required=True)
    input: str = opt(None, "input file (CSV/TSV/JSON; format detected from the file)", required=True)
    format: str = opt("auto", FORMAT_HELP)
    batch_size: int = opt(0, PREDICT_BATCH_HELP, minimum=0)
    precision: str = opt("auto", PRECISION_HELP, choices=PRECISIONS)
    runtime: str = opt("torch", RUNTIME_HELP, choices=RUNTIMES)
    adapt_prior: bool = opt(False, "label shift: estimate the input's share of the training file's most frequent "
                                   "label from its probability as calibrated on the run's dev set (EM, Saerens et "
                                   "al. 2002; no labels of the input used) and re-weight the probabilities to it; "
                                   "for a whole file whose label mix differs from training (classification and RE; "
                                   "the run must have been trained with --dev or --dev-split)")


@dataclass
class PredictConfig(RunInputConfig):
    """Options of ``kluekit predict``."""

    output: str = opt(None, "submission file to write", required=True)
    sample_submission: str | None = opt(None, "keep this file's ids, order and columns; fill its target column")


@dataclass
class EvaluateConfig(RunInputConfig):
    """Options of ``kluekit evaluate`` (the input must carry labels)."""

    output_dir: str | None = opt(None, "where to write the report (default: <model>/eval-<input name>)")
    worst: int = opt(30, "how many of the worst-predicted examples to list", minimum=0)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls, title: str, choices: dict | None = None,
                defaults: dict | None = None, only: tuple[str, ...] | None = None) -> None:
    """Add one option per dataclass field (``only``: just those); help shows the default (``choices`` overrides
    allowed values, ``defaults`` the defaults shown: a task's own, which the caller applies)."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        meta = dict(f.metadata)
        if choices and f.name in choices:
            meta["choices"] = list(choices[f.name])
        default = (defaults or {}).get(f.name, default_of(f))
        suffix = " (required)" if meta.get("required") else "" if "default" in meta["help"] or default in (None, []) \
            else f" (default: {default})"
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=meta["help"] + suffix)
        if f.type in (bool, "bool"):
            group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if is_list(f):
            group.add_argument(flag(f.name), action="extend", nargs="+", metavar="FILE" if "file" in meta["help"]
                               else None, **kwargs)
            continue
        kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
        if meta.get("choices"):
            kwargs.update(choices=meta["choices"], metavar="{" + ",".join(meta["choices"]) + "}")
        group.add_argument(flag(f.name), type=kind, **kwargs)


def build(cls, values: dict):
    """Make ``cls`` from parsed values, checking required options, choices and bounds."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    values = dict(values)
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise KluekitError(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    for name, f in names.items():
        meta = f.metadata
        value = values.get(name, default_of(f))
        if is_list(f):
            value = values[name] = [] if value is None else [value] if isinstance(value, str) else [str(v) for v in value]
        if meta.get("required") and value in (None, []):
            raise KluekitError(f"{flag(name)} is required: {meta['help']}")
        if meta.get("choices") and value not in meta["choices"]:
            raise KluekitError(f"{flag(name)}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
        if meta.get("minimum") is not None and value is not None and value < meta["minimum"]:
            raise KluekitError(f"{flag(name)}: {value} must be >= {meta['minimum']}")
    return cls(**{k: v for k, v in values.items() if k in names})


def load_config_file(path: str) -> dict:
    """Options from a YAML or JSON file (keys as field names, dashes or underscores)."""
    p = Path(path)
    if not p.is_file():
        raise KluekitError(f"--config: no such file {path}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) if p.suffix in (".yaml", ".yml") else json.loads(p.read_text("utf-8"))
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise KluekitError(f"--config: cannot parse {path}: {error}") from None
    if not isinstance(data, dict):
        raise KluekitError(f"--config: {path} must hold a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def split_options(values: dict, *classes) -> list[dict]:
    """Split one flat dict of options between dataclasses by field name."""
    return [{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(c)}} for c in classes]
