"""What the causal-LM commands share (``generate``, its few-shot ranking, ``chat``): loading a model, framing
prompts as kluekit trains causal LMs (``[bos] + tokens``), checking them against the model's positions, and
padding batches."""

from __future__ import annotations


def load_causal_lm(path: str, dialogue: bool = False):
    """(tokenizer, model in eval mode on the GPU if there is one, else the CPU); KluekitError where ``path`` is
    not a causal LM, its tokenizer has no eos token (generation would not stop) or, for a ``dialogue`` model, no
    chat template (both checked before the weights load). A tokenizer without a pad token pads with eos."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .errors import KluekitError, first_line
    from .modeling import check_model_path

    check_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.eos_token_id is None:
            raise KluekitError(f"--model: {path}'s tokenizer has no eos token, so generation would not know where "
                               "to stop (set eos_token in its tokenizer_config.json)")
        if dialogue and not getattr(tokenizer, "chat_template", None):
            raise KluekitError(f"--model: {path} is not a dialogue model (its tokenizer has no chat template); "
                               "train one with 'kluekit train dialogue'")
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError, KeyError) as error:
        raise KluekitError(f"--model: cannot load {path!r} as a causal language model: {first_line(error)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return tokenizer, model.to(device).eval()


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt as kluekit's causal LMs are trained: ``[bos] + tokens`` (no bos if none)."""
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    return [bos + ids for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]


def check_lengths(ids: list[list[int]], model, extra: int, noun: str = "prompt", first: int = 1,
                  hint: str = "shorten it or lower --max-new-tokens") -> None:
    """KluekitError naming the first prompt (numbered from ``first``), its token count and the limit, where its
    tokens and ``extra`` more exceed the model's positions."""
    from .errors import KluekitError
    from .modeling import max_positions

    limit = max_positions(model.config)
    if limit is None:
        return
    for number, row in enumerate(ids, first):
        if len(row) + extra > limit:
            raise KluekitError(f"{noun} {number}: {len(row)} tokens + {extra} new tokens exceed the model's {limit} "
                               f"positions ({hint})")


def pad_rows(rows: list[list[int]], pad_id: int, left: bool):
    """(input_ids, attention_mask) tensors of ``rows`` padded to the longest, on the left or the right."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def read_prompts(cfg) -> list[str]:
    """The prompts of ``--prompt`` or ``--input`` (``GenerateOptions``); KluekitError naming an empty one."""
    from .data.text import read_corpus
    from .errors import KluekitError

    if bool(cfg.prompt) == bool(cfg.input):
        raise KluekitError("generate: give prompts with either --prompt or --input FILE (not both)")
    if cfg.input:
        return read_corpus(cfg.input, cfg.column)  # names the file and row of an empty text
    for number, prompt in enumerate(cfg.prompt, 1):
        if not prompt.strip():
            raise KluekitError(f"--prompt {number}: empty prompt")
    return list(cfg.prompt)
