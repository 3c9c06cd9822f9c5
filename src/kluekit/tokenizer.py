"""``kluekit tokenizer train``: a WordPiece, SentencePiece-style BPE or Unigram tokenizer trained on Korean text
with the ``tokenizers`` library, saved as a directory ``AutoTokenizer.from_pretrained`` loads.

    kluekit tokenizer train --input corpus.txt --output-dir runs/wordpiece --vocab-size 32000
    kluekit tokenizer train --kind bpe --from-task sts --input train.csv dev.csv --output-dir runs/bpe \\
        --compare ../shared/models/e5-small-ko

A share of the documents (``--held-out``) is kept out of training; the vocabulary size, the share of [UNK]
pieces and the pieces per word (space-separated eojeol) on it are printed, beside the same figures for every
``--compare`` tokenizer, and saved as ``tokenizer_stats.json``. The same input gives the same tokenizer in
any process (pieces are numbered in a fixed order; for unigram, the ids of rare single characters may differ).

``--morphemes`` (wordpiece only; kiwipiepy at training time, ``pip install 'kluekit[korean]'``) learns the
vocabulary on Korean morphemes, so raw text is split greedily into morpheme-shaped pieces; the saved tokenizer
needs no analyser (``morphemes.py`` says how). Its statistics add the share of morpheme-aligned eojeol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .commands import Command
from .config import opt

log = logging.getLogger("kluekit")
KINDS = ["wordpiece", "bpe", "unigram"]
SPECIALS = {"wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
            "bpe": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "unigram": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]}
LIMIT_ALPHABET = 1000  # the tokenizers trainers' default
ROLES = ("cls_token", "pad_token", "sep_token", "unk_token", "mask_token")  # in the order of the BPE/Unigram specials


@dataclass
class TokenizerTrainOptions:
    """Options of ``kluekit tokenizer train``."""

    input: list[str] = opt([], "text file(s), one document a line, or CSV/TSV/JSON files (--column; --from-task)",
                           required=True)
    output_dir: str = opt(None, "directory to write the tokenizer to", required=True)
    kind: str = opt("wordpiece", "wordpiece (BERT), bpe (SentencePiece-style, with a ▁ word marker; GPT-2 style "
                                 "models) or unigram (SentencePiece's unigram LM)", choices=KINDS)
    from_task: str | None = opt(None, "read --input with this task's reader and train on its input texts")
    column: str | None = opt(None, "text column of CSV/TSV/JSON inputs")
    vocab_size: int = opt(32000, "pieces in the vocabulary, special tokens included", minimum=100)
    min_frequency: int = opt(2, "least count of a pair to be merged (wordpiece, bpe)", minimum=1)
    special_tokens: list[str] = opt([], "special tokens, first ids (default: [PAD] [UNK] [CLS] [SEP] [MASK] for "
                                        "wordpiece; <s> <pad> </s> <unk> <mask> for bpe and unigram)")
    lowercase: bool = opt(False, "wordpiece: lowercase Latin text (BertWordPieceTokenizer's option)")
    strip_accents: bool = opt(False, "wordpiece: strip accents (NFD: it also splits Hangul syllables into jamo)")
    clean_text: bool = opt(True, "wordpiece: drop control characters and normalise whitespace")
    handle_chinese_chars: bool = opt(True, "wordpiece: put spaces around CJK ideographs (Hanja)")
    wordpiece_prefix: str = opt("##", "wordpiece: the prefix of pieces inside a word")
    morphemes: bool = opt(False, "wordpiece: shape the vocabulary on Korean morphemes (kiwipiepy; pip install "
                                 "'kluekit[korean]'): no piece crosses a morpheme boundary, and the saved tokenizer "
                                 "splits raw text into morpheme-shaped pieces without kiwipiepy; refused for bpe and "
                                 "unigram")
    held_out: float = opt(0.05, "share of the documents kept out of training for the statistics", minimum=0)
    compare: list[str] = opt([], "tokenizer directories to measure on the same held-out documents (e.g. e5-small-ko)")
    seed: int = opt(42, "random seed of the held-out split")
    overwrite: bool = opt(False, "allow writing into a non-empty --output-dir")


def read_documents(cfg: TokenizerTrainOptions) -> list[str]:
    """Every document of every input (a task's input texts with ``--from-task``), blank ones left out."""
    from .data.text import read_corpus
    from .tasks import get_task_class

    if cfg.from_task:
        task = get_task_class(cfg.from_task)()
        texts = [text for path in cfg.input for text in task.texts(task.read(path, require_labels=False))]
    else:
        texts = [text for path in cfg.input for text in read_corpus(path, cfg.column)]
    return [text for text in texts if text.strip()]


def train_tokenizer(cfg: TokenizerTrainOptions, texts: list[str], cuts: list[list[int]] | None = None):
    """A ``PreTrainedTokenizerFast`` trained on ``texts`` (ids renumbered: the same in every process); with
    ``cuts`` (each text's morpheme cuts, ``morphemes.morpheme_cuts``) a morpheme-shaped WordPiece."""
    from tokenizers import implementations
    from transformers import BertTokenizerFast, PreTrainedTokenizerFast

    specials = list(cfg.special_tokens) or SPECIALS[cfg.kind]
    alphabet = fixed_alphabet(texts, LIMIT_ALPHABET - (cfg.kind != "wordpiece"))
    alphabet = alphabet if cfg.kind == "wordpiece" else ["▁", *alphabet]  # the word marker replaces spaces
    if cfg.kind == "wordpiece":
        trainer = implementations.BertWordPieceTokenizer(
            clean_text=cfg.clean_text, handle_chinese_chars=cfg.handle_chinese_chars, strip_accents=cfg.strip_accents,
            lowercase=cfg.lowercase, wordpieces_prefix=cfg.wordpiece_prefix, **dict(zip(
                ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), specials)))

        def fit(documents):
            trainer.train_from_iterator(documents, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                        special_tokens=specials, wordpieces_prefix=cfg.wordpiece_prefix,
                                        show_progress=False, limit_alphabet=len(alphabet), initial_alphabet=alphabet)
            return trainer._tokenizer

        if cuts is None:
            fit(texts)
        else:
            from .morphemes import morpheme_wordpiece

            trainer._tokenizer.model = morpheme_wordpiece(fit, trainer._tokenizer, texts, cuts, specials, alphabet,
                                                          cfg.wordpiece_prefix, cfg.vocab_size, cfg.min_frequency)
        renumber_wordpiece(trainer._tokenizer, specials, cfg.wordpiece_prefix)
        return BertTokenizerFast(tokenizer_object=trainer._tokenizer, do_lower_case=cfg.lowercase,
                                 **dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), specials)))
    if cfg.kind == "bpe":
        trainer = implementations.SentencePieceBPETokenizer(unk_token=specials[3])
        trainer.train_from_iterator(texts, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                    special_tokens=specials, show_progress=False, limit_alphabet=len(alphabet),
                                    initial_alphabet=alphabet)
    else:
        trainer = implementations.SentencePieceUnigramTokenizer()
        trainer.train_from_iterator(texts, vocab_size=cfg.vocab_size, special_tokens=specials, unk_token=specials[3],
                                    show_progress=False)
        renumber_unigram(trainer._tokenizer, specials)
    frame_pairs(trainer._tokenizer, specials[0], specials[2])
    return PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, bos_token=specials[0],
                                   **dict(zip(ROLES, specials)), eos_token=specials[2])


def fixed_alphabet(texts: list[str], limit: int) -> list[str]:
    """The ``limit`` most frequent characters (ties by character): the trainers cut their alphabet at equal
    counts in hash-map order, which differs from process to process."""
    from collections import Counter

    counts = Counter()
    for text in texts:
        counts.update(text)
    ranked = sorted((c for c in counts if not c.isspace()), key=lambda c: (-counts[c], c))
    return ranked[:limit]


def renumber_wordpiece(tokenizer, specials: list[str], prefix: str) -> None:
    """Number the pieces specials first, then sorted: the trainer numbers them in hash-map order, which changes
    from process to process (the same pieces, other ids)."""
    from tokenizers import models, processors

    pieces = sorted(set(tokenizer.get_vocab()) - set(specials))
    tokenizer.model = models.WordPiece({piece: i for i, piece in enumerate(specials + pieces)}, unk_token=specials[1],
                                       continuing_subword_prefix=prefix)
    cls, sep = specials[2], specials[3]
    tokenizer.post_processor = processors.BertProcessing((sep, specials.index(sep)), (cls, specials.index(cls)))


def renumber_unigram(tokenizer, specials: list[str]) -> None:
    """Specials first, then pieces by score (rounded: the trainer's float sums differ in the last digits from
    process to process) and text. The rare characters the trainer adds for coverage get made-up scores in
    hash-map order, so their ids can still differ between processes; the pieces do not."""
    import json as _json

    from tokenizers import models

    state = _json.loads(tokenizer.to_str())["model"]
    scores = {piece: round(score, 8) for piece, score in state["vocab"]}
    rest = sorted(set(scores) - set(specials), key=lambda piece: (-scores[piece], piece))
    vocab = [(piece, scores[piece]) for piece in specials + rest]
    tokenizer.model = models.Unigram(vocab, unk_id=specials.index(specials[3]), byte_fallback=False)


def frame_pairs(tokenizer, bos: str, eos: str) -> None:
    """``<s> A </s>`` and ``<s> A </s> </s> B </s>`` (RoBERTa's framing), so tasks and masked-LM blocks get
    their special tokens."""
    from tokenizers import processors

    ids = (tokenizer.token_to_id(bos), tokenizer.token_to_id(eos))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B:1 {eos}:1", special_tokens=[(bos, ids[0]), (eos, ids[1])])


def statistics(tokenizer, texts: list[str]) -> dict:
    """Vocabulary size, the share of [UNK] pieces and pieces per space-separated word, on ``texts``."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    pieces = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids)).sum()
    unknown = sum(row.count(tokenizer.unk_token_id) for row in ids) if tokenizer.unk_token_id is not None else 0
    words = sum(len(text.split()) for text in texts)
    return {"vocab_size": len(tokenizer), "unk_rate": round(unknown / max(pieces, 1), 5),
            "pieces_per_word": round(float(pieces) / max(words, 1), 4), "held_out_documents": len(texts)}


def tokenizer_train(cfg: TokenizerTrainOptions) -> dict:
    """Run ``kluekit tokenizer train``: train, save, and print the held-out statistics (with --compare's)."""
    from transformers import AutoTokenizer

    from .errors import KluekitError, first_line
    from .modeling import check_model_path
    from .rundir import RunDir

    if not 0 <= cfg.held_out < 1:
        raise KluekitError(f"--held-out: {cfg.held_out} must be at least 0 and below 1")
    if cfg.morphemes and cfg.kind != "wordpiece":
        raise KluekitError(f"--morphemes: only with --kind wordpiece, not {cfg.kind} (the morpheme-shaped "
                           "vocabulary is built for WordPiece's greedy longest-first matching)")
    morphemes = None
    if cfg.morphemes:
        from .morphemes import aligned_share, kiwi_version, morpheme_cuts

        morphemes = kiwi_version()
    for path in cfg.compare:
        check_model_path(path)
    texts = read_documents(cfg)
    if not texts:
        raise KluekitError(f"--input: no text in {', '.join(cfg.input)}")
    order = np.random.default_rng(cfg.seed).permutation(len(texts))
    cut = int(round(len(texts) * cfg.held_out))
    held_ids, train_ids = sorted(order[:cut]), sorted(order[cut:])
    held, train = [texts[i] for i in held_ids], [texts[i] for i in train_ids]
    cuts = morpheme_cuts(texts) if morphemes else None
    run = RunDir.create(cfg.output_dir, f"tokenizer-{cfg.kind}", overwrite=cfg.overwrite)
    log.info("training a %s tokenizer (%d pieces) on %d documents (%d held out)", cfg.kind, cfg.vocab_size,
             len(train), len(held))

    def pick(ids):  # the morpheme cuts of these documents
        return None if cuts is None else [cuts[i] for i in ids]

    tokenizer = train_tokenizer(cfg, train, pick(train_ids))
    probe, probe_cuts = (held, pick(held_ids)) if held else (train, pick(train_ids))
    if len(tokenizer) > cfg.vocab_size:
        log.warning("the vocabulary has %d pieces, more than --vocab-size %d: WordPiece keeps every character of the "
                    "text (up to 1,000) and its %s form", len(tokenizer), cfg.vocab_size, cfg.wordpiece_prefix)
    run.save_model(tokenizer.save_pretrained)

    def measure(tok) -> dict:
        stats = statistics(tok, probe)
        return {**stats, "morpheme_aligned_words": aligned_share(tok, probe, probe_cuts)} if morphemes else stats

    figures = {str(run.path): measure(tokenizer)}
    for path in cfg.compare:
        try:
            other = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise KluekitError(f"--compare: cannot load {path!r}: {first_line(error)}") from None
        figures[path] = measure(other)
    run.write_json("tokenizer_stats.json", {"kind": cfg.kind, "documents": len(texts), "held_out": cfg.held_out,
                                            "inputs": cfg.input, "morphemes": morphemes, "figures": figures})
    print(f"{'tokenizer':<50} {'vocab':>7} {'unk rate':>9} {'pieces/word':>12}"
          + (" morpheme-aligned" if morphemes else ""))
    for name, stats in figures.items():
        aligned = stats.get("morpheme_aligned_words")
        print(f"{name[-50:]:<50} {stats['vocab_size']:>7} {stats['unk_rate']:>9.4%} {stats['pieces_per_word']:>12.3f}"
              + (f" {aligned:>16.2%}" if aligned is not None else ""))
    if morphemes:
        print("morpheme-aligned: share of held-out eojeol of two or more morphemes (kiwipiepy) whose pieces break "
              "at every morpheme boundary")
    print(f"tokenizer written to {run.path} (load it with AutoTokenizer.from_pretrained)")
    return figures


TOKENIZER_TRAIN = Command(TokenizerTrainOptions, "train a WordPiece, BPE or Unigram tokenizer on text files or task "
                                                 "files (--morphemes: a morpheme-aware WordPiece)",
                          "kluekit.tokenizer:tokenizer_train")
