"""``kluekit fill-mask``: the top-k fillings of each mask in sentences, from a masked language model.

    kluekit fill-mask --model runs/tapt-sts --text "오늘 [MASK]가 정말 좋다" --k 5
    kluekit fill-mask --model runs/bert-small --input sentences.txt --output fillings.csv

Runs transformers' ``fill-mask`` pipeline (as the KLUE course does) on a ``kluekit pretrain mlm`` run or any
masked LM. ``[MASK]`` is accepted for models whose mask token is another (``<mask>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .commands import Command
from .config import opt


@dataclass
class FillMaskOptions:
    """Options of ``kluekit fill-mask``."""

    model: str = opt(None, "masked language model: a 'kluekit pretrain mlm' run or any masked-LM directory",
                     required=True)
    text: list[str] = opt([], "sentence(s) holding one or more mask tokens ([MASK])")
    input: str | None = opt(None, "file of sentences: one per line, or a CSV/TSV/JSON text column (--column)")
    column: str | None = opt(None, "text column of a CSV/TSV/JSON --input")
    k: int = opt(5, "how many fillings to show per mask", minimum=1)
    output: str | None = opt(None, "also write the fillings as CSV: text_id, mask, rank, token, score, sequence")
    batch_size: int = opt(32, "sentences per batch", minimum=1)


def texts_of(cfg: FillMaskOptions, mask_token: str) -> list[str]:
    """The sentences, ``[MASK]`` written as the model's mask token; KluekitError for one without a mask."""
    from .data.text import read_corpus
    from .errors import KluekitError

    if bool(cfg.text) == bool(cfg.input):
        raise KluekitError("fill-mask: give sentences with either --text or --input FILE (not both)")
    texts = [text.replace("[MASK]", mask_token) for text in (cfg.text or read_corpus(cfg.input, cfg.column))]
    for number, text in enumerate(texts, 1):
        if mask_token not in text:
            where = f"{cfg.input}:{number}" if cfg.input else f"--text {number}"
            shown = mask_token if mask_token == "[MASK]" else f"{mask_token} or [MASK]"
            raise KluekitError(f"{where}: no mask token ({shown}) in {text[:60]!r}")
    return texts


def fill_mask(cfg: FillMaskOptions) -> list[dict]:
    """Print (and with ``--output`` write) the top-k fillings of every mask of every sentence."""
    import pandas as pd
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    from .data.io import check_output_path, write_csv_atomic
    from .errors import KluekitError, first_line
    from .modeling import check_model_path

    check_model_path(cfg.model)
    if cfg.output:
        check_output_path(cfg.output)
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        model = AutoModelForMaskedLM.from_pretrained(cfg.model)
    except (OSError, ValueError) as error:
        raise KluekitError(f"--model: cannot load {cfg.model!r} as a masked language model: {first_line(error)}") from None
    if tokenizer.mask_token is None:
        raise KluekitError(f"--model: {cfg.model}'s tokenizer has no mask token")
    texts = texts_of(cfg, tokenizer.mask_token)
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=cfg.k,
                    device=0 if torch.cuda.is_available() else -1)
    answers = fill(texts, batch_size=cfg.batch_size)
    answers = [answers] if len(texts) == 1 else answers  # the pipeline unwraps a single input
    rows = []
    for text_id, (text, answer) in enumerate(zip(texts, answers)):
        masks = answer if answer and isinstance(answer[0], list) else [answer]  # one list per mask
        print(f"{text_id}: {text}")
        for mask, candidates in enumerate(masks):
            for rank, candidate in enumerate(candidates, 1):
                rows.append({"text_id": text_id, "mask": mask, "rank": rank, "token": candidate["token_str"],
                             "score": round(float(candidate["score"]), 6), "sequence": candidate["sequence"]})
                print(f"  mask {mask} #{rank} {candidate['score']:.4f} {candidate['token_str']}")
    if cfg.output:
        write_csv_atomic(pd.DataFrame(rows, columns=["text_id", "mask", "rank", "token", "score", "sequence"]),
                         cfg.output)
        print(f"fillings written to {cfg.output}")
    return rows


FILL_MASK = Command(FillMaskOptions, "top-k fillings of the mask tokens in sentences, from a masked language model",
                    "kluekit.fillmask:fill_mask")
