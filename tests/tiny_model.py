"""A tiny BERT built on the fly for tests: WordPiece trained on KLUE-STS text + a 2-layer encoder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_tokenizer(texts: list[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on ``texts``; the same texts always give the same ids."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    # the trainer numbers pieces in hash-map order, which changes from process to process: renumber them
    # (special tokens first, then sorted) so the same texts always give the same ids, hence the same model
    pieces = sorted(set(tokenizer.get_vocab()) - set(SPECIALS))
    tokenizer.model = models.WordPiece({piece: i for i, piece in enumerate(SPECIALS + pieces)}, unk_token="[UNK]")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def build_tiny_model(texts: list[str], out_dir: Path, vocab_size: int = 2000, seed: int = 0, hidden: int = 64,
                     layers: int = 2, dropout: float = 0.1) -> Path:
    """Train a WordPiece tokenizer on ``texts`` and save it with a random 2-layer BERT into ``out_dir``."""
    import torch

    fast = build_tiny_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=fast.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=2 * hidden, max_position_embeddings=256, pad_token_id=0,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    out_dir.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


def train_tiny_sts(tiny_model: Path, sts_train_csv: Path, root: Path) -> Path:
    """A tiny STS cross-encoder trained for a few steps through the CLI (seconds), in ``root/run``."""
    from kluekit import cli

    train = root / "train.csv"
    pd.read_csv(sts_train_csv).head(64).to_csv(train, index=False)
    run = root / "run"
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--output-dir", str(run),
                     "--max-steps", "4", "--batch-size", "16", "--max-length", "64", "--learning-rate", "1e-3"]) == 0
    return run


def sts_texts(train_csv: Path) -> list[str]:
    frame = pd.read_csv(train_csv)
    return frame["sentence1"].tolist() + frame["sentence2"].tolist()


def build_tiny_biencoder(model_dir: Path, out_dir: Path) -> Path:
    """Wrap the tiny BERT in ``model_dir`` as a sentence-transformers bi-encoder (mean pooling), saved in ``out_dir``.

    ``SentenceTransformer(out_dir)`` and ``kluekit.embedding.encoding.load_biencoder(out_dir)`` load it.
    """
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers.models import Pooling, Transformer

    encoder = Transformer(str(model_dir), max_seq_length=128)
    dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_word_embedding_dimension
    model = SentenceTransformer(modules=[encoder, Pooling(dim(), "mean")], device="cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    return out_dir


def build_tiny_gpt2(texts: list[str], out_dir: Path, vocab_size: int = 800, seed: int = 0, hidden: int = 64,
                    layers: int = 2, positions: int = 128) -> Path:
    """A SentencePiece-style BPE tokenizer (``kluekit tokenizer train --kind bpe``: <s> <pad> </s> <unk> <mask>)
    trained on ``texts`` and a random GPT-2 (``layers`` x ``hidden``, ``positions`` positions), saved in ``out_dir``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from kluekit.tokenizer import TokenizerTrainOptions, train_tokenizer

    tokenizer = train_tokenizer(TokenizerTrainOptions(input=["-"], output_dir=str(out_dir), kind="bpe",
                                                      vocab_size=vocab_size), texts)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=hidden, n_layer=layers, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
