"""Loading tokenizers and transformers models: pretrained encoders with a fresh task head, and saved runs."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from .errors import KluekitError, first_line

RUN_INFO = "kluekit.json"


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id ("org/name" has exactly one slash)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


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
