"""Loading tokenizers and transformers models: pretrained encoders with a fresh task head, and saved runs."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from .errors import KluekitError, first_line

RUN_INFO = "kluekit.json"


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id ("org/name" has exactly one slash)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


def max_positions(config) -> int | None:
    """The most tokens a model of ``config`` takes (``max_position_embeddings``, GPT-2's ``n_positions``), or None
    if its config says none."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_model_path(name: str) -> None:
    """KluekitError naming --model when ``name`` looks like a local path but is no directory."""
    if _looks_local(name) and not Path(name).expanduser().is_dir():
        raise KluekitError(f"--model: no such directory {name!r}")


def load_pretrained(name: str, model_class, config: dict, special_tokens=()):
    """Tokenizer and ``model_class.from_pretrained(name, **config)`` (a fresh head where the checkpoint has
    none); ``special_tokens`` are added to the tokenizer and the embeddings resized for them."""
    check_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        added = tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)}) if special_tokens else 0
        model = model_class.from_pretrained(name, pad_token_id=tokenizer.pad_token_id, **config)
    except (OSError, ValueError) as error:
        raise KluekitError(f"--model: cannot load {name!r}: {first_line(error)}") from None
    if added:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8)
    return tokenizer, model


def check_saved_model(run_dir) -> None:
    """KluekitError when a run directory holds no saved model yet."""
    if not (Path(run_dir) / "config.json").is_file():
        raise KluekitError(f"--model: {run_dir} holds no saved model yet (was its training killed before "
                           "the first evaluation? continue it with 'kluekit train ... --resume')")


def load_saved(run_dir, model_class, device):
    """Tokenizer and model (in eval mode, on ``device``) saved in a run directory."""
    check_saved_model(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = model_class.from_pretrained(run_dir).to(device).eval()
    return tokenizer, model


def pretrained_core(model):
    """The transformers model inside ``model``: ``model`` itself, or the first ``PreTrainedModel`` a wrapper
    (a sentence-transformers bi-encoder) holds."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module
    raise KluekitError("--reinit-layers: the model holds no transformers model to re-initialise")


def encoder_layers(model):
    """The encoder's list of layers (``base_model.encoder.layer`` for BERT, ``base_model.h`` for GPT-2, ...): the
    longest ``nn.ModuleList`` under the base model, the first of them on a tie."""
    import torch

    core = pretrained_core(model)
    lists = [module for module in core.base_model.modules() if isinstance(module, torch.nn.ModuleList)]
    if not lists:
        raise KluekitError("--reinit-layers: found no list of encoder layers in the model")
    return max(lists, key=len)


def reinit_top_layers(model, count: int, seed: int) -> None:
    """Re-initialise the top ``count`` encoder layers with the model's own ``_init_weights`` (Zhang et al. 2021,
    "Revisiting few-sample BERT fine-tuning": the top layers are the most specific to pre-training). Drawn from
    a generator seeded with ``seed`` and set apart from torch's global one: the same seed, the same weights, and
    the random numbers training draws afterwards are not shifted."""
    import torch

    layers = encoder_layers(model)
    if count > len(layers):
        raise KluekitError(f"--reinit-layers: {count} is more than the model's {len(layers)} encoder layers")
    core = pretrained_core(model)
    with torch.random.fork_rng():  # the CPU generator, and CUDA's where there is one
        torch.manual_seed(seed)
        for layer in layers[len(layers) - count:]:
            flags = list(layer.parameters()) + list(layer.buffers())
            for tensor in flags:  # transformers skips tensors it marked as loaded (_is_hf_initialized)
                tensor._is_hf_initialized = False
            for module in layer.modules():
                core._init_weights(module)
            for tensor in flags:
                tensor._is_hf_initialized = True
