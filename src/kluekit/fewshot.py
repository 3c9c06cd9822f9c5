"""Few-shot classification with a causal language model (``kluekit generate --few-shot``): rank classification.

    kluekit generate --model runs/gpt2-ko --few-shot ratings_train.txt --input ratings_test.txt \\
        --shots 4 --label-words 0=부정 1=긍정 --output predictions.csv

K labelled examples, drawn once for a seed and spread over the labels, are written with ``--template`` before
every query; the query is written up to its label. Each candidate label word is then scored as the
continuation of that prompt (the sum of its tokens' log-probabilities, one forward pass per batch of
(query, candidate) pairs, no ``generate``), and the best one is the prediction: the KLUE course's few-shot
practice, without parsing free text out of a generation. With gold labels in ``--input``, accuracy (x100).
"""

from __future__ import annotations

import logging

import numpy as np

from .errors import DataError, KluekitError

log = logging.getLogger("kluekit")
SHOWN = 20  # predictions printed (all are written with --output)


def is_table(path) -> bool:
    """A CSV/TSV/JSON file by its name, or a text file whose first line holds a tab (NSMC's ``.txt``)."""
    from pathlib import Path

    from .data.io import read_text
    from .data.text import TABLE_KINDS

    return Path(path).suffix.lower() in TABLE_KINDS or "\t" in read_text(path).split("\n", 1)[0]


def pick_text_column(frame, name: str, label_column: str | None, path) -> str:
    """The column ``name``, else the one column that is neither the label nor numbers (NSMC: ``document`` beside
    ``id`` and ``label``); DataError listing the columns the file has."""
    import pandas as pd

    from .data.columns import ROW, match_column

    found = match_column(frame.columns, name, path)
    if found is not None:
        return found
    columns = [c for c in frame.columns if c != ROW]
    texts = [c for c in columns if c != label_column
             and pd.to_numeric(frame[c].str.strip(), errors="coerce").isna().any()]
    if len(texts) == 1:
        return texts[0]
    raise DataError(path, 1, name, f"missing text column (found: {', '.join(columns)}); choose one with --text-column")


def read_labelled(path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of the few-shot examples; rows with an empty text or label are left out."""
    from .data.columns import ROW, match_column
    from .data.tables import read_table

    frame = read_table(path)
    label = match_column(frame.columns, label_column, path)
    if label is None:
        found = ", ".join(c for c in frame.columns if c != ROW)
        raise DataError(path, 1, label_column, f"missing label column (found: {found}); choose one with --label-column")
    text = pick_text_column(frame, text_column, label, path)
    kept = (frame[text].str.strip() != "") & (frame[label].str.strip() != "")
    if (~kept).any():
        log.info("%s: %d rows with an empty text or label left out of the few-shot examples", path, int((~kept).sum()))
    return frame.loc[kept, text].str.strip().tolist(), frame.loc[kept, label].str.strip().tolist()


def read_queries(path, text_column: str, label_column: str) -> tuple[list[str], list[str] | None]:
    """(texts, gold labels or None) of the queries: a table's text column (and its label column where it has
    one), or the lines of a text file."""
    from .data.columns import match_column
    from .data.tables import check_not_empty, read_table
    from .data.text import read_corpus

    if not is_table(path):
        return read_corpus(path), None
    frame = read_table(path)
    label = match_column(frame.columns, label_column, path)
    text = pick_text_column(frame, text_column, label, path)
    check_not_empty(frame, path, [text])
    gold = frame[label].str.strip().tolist() if label is not None else None
    return frame[text].str.strip().tolist(), gold


def label_words(items: list[str], labels: list[str]) -> dict[str, str]:
    """Label value -> the word written for it: ``--label-words 0=부정 1=긍정``, else the value itself."""
    words = {label: label for label in labels}
    given = {}
    for item in items:
        value, sep, word = item.partition("=")
        if not sep or not value.strip() or not word.strip():
            raise KluekitError(f"--label-words: {item!r} is not VALUE=WORD (e.g. 0=부정 1=긍정)")
        given[value.strip()] = word.strip()
    missing = sorted(set(labels) - set(given)) if given else []
    if missing:
        raise KluekitError(f"--label-words: no word for label(s) {', '.join(missing)} "
                           f"(the labels are {', '.join(sorted(set(labels)))})")
    return {**words, **given}


def draw_shots(labels: list[str], k: int, seed: int) -> list[int]:
    """Indices of ``k`` examples drawn with ``numpy.random.default_rng(seed)``: round-robin over the labels in
    sorted order (each label's examples in a random order), so every label gets its share; the drawn shots are
    then shuffled so that the last one (the model's nearest context) is not always the same label."""
    labels = np.asarray(labels, dtype=object)
    if k > len(labels):
        raise KluekitError(f"--shots: {k} shots asked, but the few-shot file has only {len(labels)} examples")
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == label)) for label in sorted(set(labels.tolist()))]
    turns = sorted((turn, c, int(index)) for c, pool in enumerate(pools) for turn, index in enumerate(pool[:k]))
    picked = np.asarray([index for _, _, index in turns[:k]], dtype=np.int64)
    return rng.permutation(picked).tolist()


def query_head(template: str) -> str:
    """The template up to its label: how a query is written (before right-stripping)."""
    if "{text}" not in template or "{label}" not in template:
        raise KluekitError(f"--template: {template!r} must hold {{text}} and {{label}}")
    head = template[:template.index("{label}")]
    if "{text}" not in head:
        raise KluekitError("--template: {text} must come before {label}")
    return head


def fill(template: str, text: str, label: str) -> str:
    try:
        return template.format(text=text, label=label)
    except (KeyError, IndexError, ValueError) as error:
        raise KluekitError(f"--template: cannot fill {template!r}: {error} (write a literal brace as {{{{ or }}}})") \
            from None


def few_shot_prompts(template: str, shots: list[tuple[str, str]], queries: list[str]) -> tuple[list[str], str]:
    """(prompt of every query, the whitespace the template puts before a label): the filled shots, then the
    query written up to its label and right-stripped; a candidate word is scored after that whitespace."""
    head = query_head(template)
    context = "".join(fill(template, text, word) for text, word in shots)
    gap = head[len(head.rstrip()):]
    return [context + fill(head, query, "").rstrip() for query in queries], gap


def pair_ids(tokenizer, prompts: list[str], choices: list[str]) -> tuple[list[list[int]], list[int]]:
    """For every (prompt, choice) pair, in prompt-major order: (its token ids ``[bos] + prompt + choice``, where
    the choice's tokens start). The pair is tokenized whole, as the model would read it, and the choice's tokens
    are what follows the prompt's own tokens (the choice tokenized alone where the two do not line up)."""
    from .errors import KluekitError

    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    contexts, alone = encode(list(prompts)), encode(list(choices))
    if not all(alone):
        raise KluekitError("--choices: a choice that makes no tokens")
    whole = encode([prompt + choice for prompt in prompts for choice in choices])
    rows, starts = [], []
    for i, ids in enumerate(whole):
        context = contexts[i // len(choices)]
        lined_up = len(ids) > len(context) and ids[:len(context)] == context
        rows.append(bos + (ids if lined_up else context + alone[i % len(choices)]))
        starts.append(len(bos) + len(context))
    return rows, starts


def score_choices(model, tokenizer, prompts: list[str], choices: list[str], batch_size: int) -> np.ndarray:
    """An (n_prompts, n_choices) array: the sum of the log-probabilities of each choice's tokens as the
    continuation of each prompt. ``choices`` are appended verbatim (give ``" 긍정"`` with the space a template
    puts before it). One forward pass per batch of pairs (right-padded); only the logits from the earliest
    choice token on are computed where the model takes ``logits_to_keep``."""
    import inspect

    import torch

    from .causal import pad_rows

    rows, starts = pair_ids(tokenizer, prompts, choices)
    keeps = "logits_to_keep" in inspect.signature(model.forward).parameters
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = torch.zeros(len(rows), dtype=torch.float64)
    with torch.inference_mode():
        for first in range(0, len(rows), batch_size):
            batch = slice(first, first + batch_size)
            ids, mask = pad_rows(rows[batch], pad, left=False)
            start = torch.tensor(starts[batch]).unsqueeze(1)
            offset = max(int(start.min()) - 1, 0) if keeps else 0  # the first position whose logits are needed
            extra = {"logits_to_keep": ids.shape[1] - offset} if keeps else {}
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), **extra).logits
            targets = ids[:, offset + 1:]
            positions = torch.arange(offset + 1, ids.shape[1]).unsqueeze(0)
            wanted = (positions >= start) & (mask[:, offset + 1:] == 1)  # the choice's tokens, not padding
            picked = logits[:, :-1][wanted.to(logits.device)].float().log_softmax(-1)
            token_logprobs = picked.gather(-1, targets[wanted].to(picked.device).unsqueeze(-1)).squeeze(-1)
            row_of = wanted.nonzero()[:, 0]
            scores[batch] = torch.zeros(len(ids), dtype=torch.float64).index_add_(
                0, row_of, token_logprobs.double().cpu())
    return scores.view(len(prompts), len(choices)).numpy()


def classify(cfg) -> dict:
    """Rank classification of ``kluekit generate`` (``--few-shot`` or ``--choices``): rows ``prompt_id, text,
    prediction, score_<word>...``, printed and written with ``--output``; ``accuracy`` (x100) where the
    queries carry gold labels."""
    import pandas as pd

    from .data.io import write_csv_atomic
    from .causal import check_lengths, load_causal_lm, prompt_ids, read_prompts

    gold, words = None, {}
    if cfg.few_shot:
        if not cfg.input or cfg.prompt:
            raise KluekitError("--few-shot: give the queries to classify with --input FILE (not --prompt)")
        texts, labels = read_labelled(cfg.few_shot, cfg.text_column, cfg.label_column)
        words = label_words(cfg.label_words, labels)
        shots = [(texts[i], words[labels[i]]) for i in draw_shots(labels, cfg.shots, cfg.seed)]
        queries, gold = read_queries(cfg.input, cfg.column or cfg.text_column, cfg.label_column)
        template = cfg.template.replace("\\n", "\n").replace("\\t", "\t")  # typed on a command line
        prompts, gap = few_shot_prompts(template, shots, queries)
        choices = cfg.choices or [words[label] for label in sorted(set(labels))]
    else:
        queries = read_prompts(cfg)
        prompts, gap, choices = [query.rstrip() for query in queries], " ", cfg.choices
    if len(set(choices)) < len(choices):
        raise KluekitError(f"--choices: repeated word(s) in {', '.join(choices)}")
    tokenizer, model = load_causal_lm(cfg.model)
    longest = max(len(ids) for ids in tokenizer([gap + c for c in choices], add_special_tokens=False)["input_ids"])
    check_lengths(prompt_ids(tokenizer, prompts), model, longest, noun="query",
                  hint="fewer --shots or a shorter --template or query")
    print(f"prompt of query 0:\n{prompts[0]}{gap}<{'|'.join(choices)}>\n")
    scores = score_choices(model, tokenizer, prompts, [gap + c for c in choices], cfg.batch_size)
    predictions = np.asarray(choices, dtype=object)[scores.argmax(1)]
    columns = ["prompt_id", "text", "prediction"] + [f"score_{c}" for c in choices]
    rows = [dict(zip(columns, [i, query, prediction, *np.round(row, 6).tolist()]))
            for i, (query, prediction, row) in enumerate(zip(queries, predictions, scores))]
    for row in rows[:SHOWN]:
        print(f"{row['prompt_id']}: {row['prediction']}  {row['text'][:60]}")
    if len(rows) > SHOWN:
        print(f"... ({len(rows) - SHOWN} more)")
    result = {"rows": rows, "choices": list(choices)}
    if gold is not None:
        correct = int(sum(p == words.get(g, g) for p, g in zip(predictions, gold)))
        result["accuracy"] = 100 * correct / len(gold)
        print(f"accuracy: {result['accuracy']:.2f} ({correct}/{len(gold)})")
    if cfg.output:
        write_csv_atomic(pd.DataFrame(rows, columns=columns), cfg.output)
        print(f"predictions written to {cfg.output}")
    return result
