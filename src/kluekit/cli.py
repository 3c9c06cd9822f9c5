"""The ``kluekit`` command: parses options, then calls a plain function in ``runner``.

    kluekit train sts --train train.csv --dev dev.csv --model klue/roberta-small
    kluekit evaluate sts --model runs/sts-... --input dev.csv
    kluekit predict sts --model runs/sts-... --input test.csv --output output.csv

Commands that are not a (verb, task) pair, such as ``encode``, ``ensemble`` or ``serve``, are
``Command`` objects (``commands.py``) listed by ``_commands``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from . import __version__
from .config import EvaluateConfig, PredictConfig, TrainConfig, add_options, build, load_config_file, split_options
from .data.io import write_reason
from .errors import KluekitError
from .tasks import TASKS

VERBS = {
    "train": (TrainConfig, "fine-tune a pretrained model on a training file and write a run directory"),
    "evaluate": (EvaluateConfig, "score a run on a labelled file: official metrics, plots, per-group tables"),
    "predict": (PredictConfig, "write a submission file for an input file"),
    "pretrain": (TrainConfig, "pre-train a language model (continue a pretrained one, or from scratch) and write "
                              "a run directory that 'kluekit train <task> --model' accepts"),
}


def _commands() -> dict:
    """The top-level commands; their option modules are light to import."""
    from .embedding.commands import ENCODE, SEARCH
    from .ensemble import ENSEMBLE
    from .fillmask import FILL_MASK
    from .answering import ANSWER
    from .chat import CHAT
    from .generation import GENERATE
    from .mining import MINE_NEGATIVES
    from .serving.commands import SERVE

    return {"ensemble": ENSEMBLE, "encode": ENCODE, "search": SEARCH, "serve": SERVE, "fill-mask": FILL_MASK,
            "generate": GENERATE, "chat": CHAT, "answer": ANSWER, "mine-negatives": MINE_NEGATIVES}


def _groups() -> dict:
    """Commands grouped under a noun (``kluekit tokenizer train``): name -> (help, {sub-command: Command})."""
    from .tokenizer import TOKENIZER_TRAIN

    return {"tokenizer": ("train tokenizers for pre-training", {"train": TOKENIZER_TRAIN})}


def _add_command(subparsers, name: str, command) -> None:
    parser = subparsers.add_parser(name, help=command.help, description=command.help)
    parser.add_argument("--config", help="YAML/JSON file of options; command-line options override it")
    add_options(parser, command.options, "options")
    parser.set_defaults(_command=command)


def verb_fields(config_cls, task_cls) -> tuple[str, ...] | None:
    """The verb's options a task offers: all (None), less ``--adapt-prior`` where its predictions are not class
    probabilities."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    return None if task_cls.label_shift or "adapt_prior" not in names else tuple(n for n in names if n != "adapt_prior")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kluekit", description="Korean NLU (KLUE) training, evaluation and prediction.")
    parser.add_argument("--version", action="version", version=f"kluekit {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    commands = _commands()
    for verb, (config_cls, help_text) in VERBS.items():
        verb_parser = verbs.add_parser(verb, help=help_text, description=help_text)
        tasks = verb_parser.add_subparsers(dest="task", metavar="TASK", required=True)
        for name, task_cls in TASKS.items():
            if verb not in task_cls.verbs:
                continue
            task_parser = tasks.add_parser(name, help=(task_cls.__doc__ or "").strip().splitlines()[0],
                                           description=f"kluekit {verb} {name}: {help_text}")
            task_parser.add_argument("--config", help="YAML/JSON file of options; command-line options override it")
            add_options(task_parser, config_cls, f"{verb} options", {"format": getattr(task_cls, "formats", ["auto"])},
                        task_cls.train_defaults if config_cls is TrainConfig else None, verb_fields(config_cls, task_cls))
            if config_cls is TrainConfig:
                add_options(task_parser, task_cls.Options, f"{name} options")
            elif task_cls.inference_options:
                add_options(task_parser, task_cls.Options, f"{name} options (default: as the run was trained)",
                            defaults={n: None for n in task_cls.inference_options}, only=task_cls.inference_options)
    for name, command in commands.items():
        _add_command(verbs, name, command)
    for name, (help_text, group) in _groups().items():
        subcommands = verbs.add_parser(name, help=help_text, description=help_text).add_subparsers(
            dest="subcommand", metavar="COMMAND", required=True)
        for sub, command in group.items():
            _add_command(subcommands, sub, command)
    return parser


def run(argv: list[str] | None = None) -> object:
    """Parse ``argv`` and run the verb; raises KluekitError for bad input."""
    from . import runner

    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config", None)
    command = args.pop("_command", None)
    verb, task_name = args.pop("verb"), args.pop("task", None)
    args.pop("subcommand", None)
    values = {**(load_config_file(config_file) if config_file else {}), **args}
    if command is not None:
        return command.call(build(command.options, values))
    task_cls = TASKS[task_name]
    config_cls = VERBS[verb][0]
    if config_cls is TrainConfig:
        if values.get("recipe"):  # under --config and the command line, above the task's defaults
            from .recipes import load_recipe

            values = {**load_recipe(values["recipe"], task_name), **values}
        run_values, task_values = split_options(values, config_cls, task_cls.Options)
        run_values = {**task_cls.train_defaults, **run_values}
        unknown = set(values) - set(run_values) - set(task_values)
        if unknown:
            raise KluekitError(f"--config: unknown option(s) {', '.join(sorted(unknown))}")
        task = task_cls(build(task_cls.Options, task_values))
        cfg = build(config_cls, run_values)
        check_format(task_cls, cfg.format)
        result = runner.train(task, cfg)
        print_train_result(result, task)
        return result
    task_options = {n: values.pop(n) for n in task_cls.inference_options if n in values}
    cfg = build(config_cls, values)
    check_format(task_cls, cfg.format)
    if verb == "predict":
        return runner.predict(cfg, task_name, task_options)
    result = runner.evaluate(cfg, task_name, task_options)
    print("\n".join(f"{k}: {v:.2f}" for k, v in result["metrics"].items()))
    if result["report"]:
        print("\n".join(result["report"]))
    print(f"report written to {result['output_dir']}")
    return result


def check_format(task_cls, fmt: str) -> None:
    formats = getattr(task_cls, "formats", ("auto",))
    if fmt not in formats:
        raise KluekitError(f"--format: {fmt!r} is not one of {', '.join(formats)}")


def print_train_result(result: dict, task) -> None:
    if not is_main_process():
        return
    if "folds" in result:  # --folds K
        for fold in result["folds"]:
            print(f"fold {fold['fold']} ({fold['steps']} steps, {fold['train_seconds']:.1f}s): "
                  + " ".join(f"{k}={fold[k]:.2f}" for k in result["oof"]) + f"  {fold['run_dir']}")
        print("out-of-fold: " + " ".join(f"{k}={v:.2f}" for k, v in result["oof"].items())
              + f"; written to {result['run_dir']}/oof")
        return
    best = result.get("best")
    if best:
        print(f"best dev (step {result['best_step']}): " + " ".join(f"{k}={v:.2f}" for k, v in best.items()))
    print(f"trained {result['steps']} steps in {result['train_seconds']:.1f}s "
          f"({result['train_examples_per_s']:.1f} examples/s); run directory: {result['run_dir']}")


def is_main_process() -> bool:
    """Not one of the other processes of a ``torchrun`` / ``accelerate launch`` run (they stay quiet)."""
    return os.environ.get("RANK", "0") == "0"


def setup_logging() -> None:
    """kluekit's own messages at INFO (or $KLUEKIT_LOG; WARNING in the non-main processes of a multi-GPU
    run); the libraries' chatter only from WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("kluekit").setLevel(os.environ.get("KLUEKIT_LOG", "INFO") if is_main_process() else "WARNING")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    try:
        run(argv)
    except KluekitError as error:
        print(f"kluekit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kluekit: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # a disk or permission fault that no earlier check turned into a message
        where = f"{error.filename}: " if error.filename else ""
        print(f"kluekit: error: {where}{write_reason(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
