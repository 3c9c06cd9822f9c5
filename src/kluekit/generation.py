"""``kluekit generate``: text from a local causal language model, through ``model.generate`` (``chat.py``
answers questions with a dialogue model on the same functions).

    kluekit generate --model runs/gpt2-ko --prompt "오늘 날씨가" "이 영화는" --max-new-tokens 32
    kluekit generate --model runs/gpt2-ko --input prompts.txt --output generated.csv --do-sample --top-p 0.9
    kluekit generate --model runs/gpt2-ko --few-shot nsmc_train.txt --input nsmc_test.txt --shots 4 \\
        --label-words 0=부정 1=긍정 --output predictions.csv

A prompt is framed as kluekit trains causal models: ``[bos] + tokens`` (no bos where the tokenizer has none),
and generation stops at the eos token. Batches are left-padded (a decoder-only model continues from the last
position of every row). The text shown is the new tokens only, cut at the first ``--stop`` string.
``--few-shot`` (``fewshot.py``) classifies instead: it writes K labelled examples before each query and ranks
the label words by their log-probability as the continuation.
"""

from __future__ import annotations

from dataclasses import dataclass

from .causal import check_lengths, load_causal_lm, pad_rows, prompt_ids, read_prompts
from .commands import Command
from .config import opt

MODEL_HELP = "causal language model directory: a 'kluekit pretrain clm' run or any local causal LM"


@dataclass
class DecodingOptions:
    """The model and how ``model.generate`` decodes: shared by ``generate`` and ``chat``."""

    model: str = opt(None, MODEL_HELP, required=True)
    max_new_tokens: int = opt(64, "most tokens to generate after each prompt", minimum=1)
    min_new_tokens: int = opt(0, "fewest tokens to generate before the end token may come (0: none)", minimum=0)
    num_beams: int = opt(1, "beam search with this many beams (1: greedy, or sampling with --do-sample)", minimum=1)
    do_sample: bool = opt(False, "sample the next token (with --top-k, --top-p, --temperature) instead of taking "
                                 "the most likely one")
    top_k: int = opt(50, "sampling: keep the k most likely tokens (0: all)", minimum=0)
    top_p: float = opt(1.0, "sampling: keep the smallest set of tokens whose probability reaches p, in (0, 1]")
    temperature: float = opt(1.0, "sampling: divide the logits by this (> 0; below 1: more conservative)")
    repetition_penalty: float = opt(1.0, "divide the scores of tokens already in the text by this (1: off; > 0)")
    no_repeat_ngram_size: int = opt(0, "never repeat an n-gram of this size (0: off)", minimum=0)
    stop: list[str] = opt([], "stop generating at any of these strings, and cut the text there")
    seed: int = opt(42, "random seed of sampling (same seed, same prompts: same text)")
    batch_size: int = opt(16, "prompts per generate call", minimum=1)


@dataclass
class GenerateOptions(DecodingOptions):
    """Options of ``kluekit generate``."""

    prompt: list[str] = opt([], "prompt text(s) to continue")
    input: str | None = opt(None, "file of prompts: one per line, or a CSV/TSV/JSON text column (--column); with "
                                  "--few-shot, the queries (--text-column; accuracy when it has --label-column)")
    column: str | None = opt(None, "text column of a CSV/TSV/JSON --input")
    output: str | None = opt(None, "also write CSV: prompt_id, prompt, generated (few-shot: prompt_id, text, "
                                   "prediction, score_<word>...)")
    few_shot: str | None = opt(None, "labelled examples (CSV/TSV/JSON, e.g. NSMC's id/document/label): write --shots "
                                     "of them before each --input query and rank the label words")
    text_column: str = opt("text", "few-shot: the text column (the only non-label text column if it is missing)")
    label_column: str = opt("label", "few-shot: the label column")
    shots: int = opt(4, "few-shot: labelled examples before each query, spread over the labels (0: zero-shot)",
                     minimum=0)
    template: str = opt("문장: {text}\n감정: {label}\n\n", "few-shot: how an example is written, with {text} and "
                                                        "{label} (\\n: a newline); a query is written up to its "
                                                        "label (default: '문장: {text}\\n감정: {label}\\n\\n')")
    label_words: list[str] = opt([], "few-shot: the words written for the labels, as VALUE=WORD (0=부정 1=긍정); "
                                     "default: the label values")
    choices: list[str] = opt([], "rank these words as continuations of each prompt instead of generating "
                                 "(default with --few-shot: the label words)")


def check_decoding(cfg: DecodingOptions) -> None:
    """KluekitError for decoding values that ``config.opt`` bounds cannot say (open intervals)."""
    from .errors import KluekitError

    if not 0 < cfg.top_p <= 1:
        raise KluekitError(f"--top-p: {cfg.top_p} must be in (0, 1]")
    if cfg.temperature <= 0:
        raise KluekitError(f"--temperature: {cfg.temperature} must be > 0")
    if cfg.repetition_penalty <= 0:
        raise KluekitError(f"--repetition-penalty: {cfg.repetition_penalty} must be > 0")


def generation_config(cfg: DecodingOptions, tokenizer):
    """The ``GenerationConfig`` of the options; the sampling-only ones only when sampling (transformers warns
    about them otherwise), the stop strings only when given (``generate`` then needs ``tokenizer=``)."""
    from transformers import GenerationConfig

    values = dict(max_new_tokens=cfg.max_new_tokens, num_beams=cfg.num_beams, do_sample=cfg.do_sample,
                  repetition_penalty=cfg.repetition_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    if cfg.do_sample:
        values.update(top_k=cfg.top_k, top_p=cfg.top_p, temperature=cfg.temperature)
    if cfg.min_new_tokens:
        values["min_new_tokens"] = cfg.min_new_tokens
    if cfg.stop:
        values["stop_strings"] = list(cfg.stop)
    return GenerationConfig(**values)


def cut_at_stop(text: str, stops: list[str]) -> str:
    """``text`` up to the first occurrence of any stop string, stripped."""
    text = text.strip()
    cuts = [text.find(stop) for stop in stops if stop and stop in text]
    return text[:min(cuts)].strip() if cuts else text


def stop_strings_readable(tokenizer, stops: list[str]) -> bool:
    """Whether transformers' ``StopStringCriteria`` (``stop_strings=``) can read this tokenizer's vocabulary: it
    cannot where the tokenizer has no pieces for the Latin letters it probes with (a small Korean vocabulary)."""
    from transformers import StopStringCriteria

    if not stops:
        return False
    try:
        StopStringCriteria(tokenizer, stops)
    except ValueError:
        return False
    return True


def text_stop(tokenizer, stops: list[str], start: int):
    """A stopping criterion that decodes each row's new tokens (from column ``start``) and stops the rows that
    hold a stop string: the fallback where ``stop_strings_readable`` is False."""
    import torch
    from transformers import StoppingCriteria

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            return torch.tensor([any(stop in text for stop in stops) for text in texts], device=input_ids.device)

    return StopOnText()


def generate_texts(model, tokenizer, ids: list[list[int]], cfg: DecodingOptions) -> list[str]:
    """The generated continuation of every prompt (token ids), in order: prompts of similar length are batched
    (left-padded), ``transformers.set_seed(cfg.seed)`` first, so the same seed gives the same text."""
    import numpy as np
    import torch
    import transformers
    from tqdm.auto import tqdm

    config = generation_config(cfg, tokenizer)
    readable = stop_strings_readable(tokenizer, cfg.stop)
    if not readable:
        config.stop_strings = None
    order = np.argsort([len(row) for row in ids], kind="stable")
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    texts = [""] * len(ids)
    transformers.set_seed(cfg.seed)
    with torch.inference_mode():
        for batch in tqdm(batches, desc="generate", disable=len(batches) < 2, leave=False, unit="batch"):
            input_ids, mask = pad_rows([ids[i] for i in batch], tokenizer.pad_token_id, left=True)
            extra = {}
            if cfg.stop:
                extra = {"tokenizer": tokenizer} if readable else {
                    "stopping_criteria": [text_stop(tokenizer, cfg.stop, input_ids.shape[1])]}
            out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                 generation_config=config, **extra)
            new = tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
            for i, text in zip(batch, new):
                texts[i] = cut_at_stop(text, cfg.stop)
    return texts


def generate(cfg: GenerateOptions) -> list[dict] | dict:
    """Print (and with ``--output`` write) the continuation of every prompt: rows ``prompt_id, prompt,
    generated``. With ``--few-shot`` or ``--choices``: rank classification (``fewshot.classify``)."""
    import pandas as pd

    from .data.io import check_output_path, write_csv_atomic

    check_decoding(cfg)
    if cfg.output:
        check_output_path(cfg.output)
    if cfg.few_shot or cfg.choices:
        from .fewshot import classify

        return classify(cfg)
    prompts = read_prompts(cfg)
    tokenizer, model = load_causal_lm(cfg.model)
    ids = prompt_ids(tokenizer, prompts)
    check_lengths(ids, model, cfg.max_new_tokens)
    texts = generate_texts(model, tokenizer, ids, cfg)
    rows = [{"prompt_id": i, "prompt": p, "generated": t} for i, (p, t) in enumerate(zip(prompts, texts))]
    for row in rows:
        print(f"{row['prompt_id']}: {row['prompt']}\n  => {row['generated']}")
    if cfg.output:
        write_csv_atomic(pd.DataFrame(rows, columns=["prompt_id", "prompt", "generated"]), cfg.output)
        print(f"generated texts written to {cfg.output}")
    return rows


GENERATE = Command(GenerateOptions, "continue prompts with a causal language model, or classify them few-shot",
                   "kluekit.generation:generate")
