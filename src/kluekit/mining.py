"""``kluekit mine-negatives``: paraphrase pairs with hard negatives, for training a pair classifier (a verifier).

    kluekit mine-negatives --model ../shared/models/e5-small-ko --input ChatbotData.csv --group-column A \\
        --output pairs.csv
    kluekit mine-negatives --model ../shared/models/e5-small-ko --input close_pairs.tsv \\
        --text-column sentence1 --pair-column sentence2 --output pairs.csv --num-negatives 2
    kluekit train classify --train pairs.csv --text-column sentence1 --text-pair-column sentence2 --label-column label

A hard negative is a text whose embedding is close to the anchor's but which means something else. The
positives come from a QA set (questions that share an answer are paraphrases) or from a pair file; the
negatives are mined with sentence-transformers' ``mine_hard_negatives`` from every text of the input. The
output has ``sentence1, sentence2, label`` rows: 1 for a positive pair, 0 for an anchor and a hard negative.

Known paraphrases are never kept as negatives: the texts of the anchor's answer group (or of any given pair
that holds the anchor), and the anchor itself, are mined past and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from .commands import Command
from .config import opt

SIMILARITY_CHUNK = 1 << 26  # scores held at once while ranking the corpus (queries x corpus), 256 MB of floats


@dataclass
class MineOptions:
    """Options of ``kluekit mine-negatives``."""

    model: str = opt(None, "bi-encoder that ranks the candidates: a sentence-transformers directory or any "
                           "encoder (mean pooling)", required=True)
    input: str = opt(None, "a QA set (questions grouped by --group-column) or a pair file (--pair-column); "
                           "CSV/TSV/JSON", required=True)
    output: str = opt(None, "CSV to write: sentence1, sentence2, label (1 same meaning, 0 hard negative)",
                      required=True)
    text_column: str = opt("Q", "column of the texts: the questions, or a pair file's first text (the anchor)")
    group_column: str | None = opt(None, "QA set: column of the answers; questions that share one are paraphrases")
    pair_column: str | None = opt(None, "pair file: column of each anchor's paraphrase (its positive)")
    max_positives_per_group: int = opt(5, "QA set: at most this many positive pairs per answer group, drawn "
                                          "with --seed, so that a large group does not dominate", minimum=1)
    num_negatives: int = opt(1, "hard negatives per anchor (fewer where not enough candidates pass the filters)",
                             minimum=1)
    range_min: int = opt(0, "skip this many of each anchor's closest candidates", minimum=0)
    range_max: int = opt(50, "look no further than this many closest candidates", minimum=1)
    margin: float = opt(0.05, "relative margin: a negative's cosine must be at most (1 - margin) x the anchor's "
                              "positive cosine (its lowest one), so near-paraphrases are not taken", minimum=0)
    max_score: float = opt(1.0, "skip candidates whose cosine to the anchor is above this (1: no cap)")
    positives: bool = opt(True, "also write the positive pairs (label 1)")
    batch_size: int = opt(64, "texts per encoding batch", minimum=1)
    seed: int = opt(42, "seed of the positive pairs drawn from each answer group")


def check_options(cfg: MineOptions) -> None:
    """KluekitError naming the option for choices that cannot go together."""
    from .errors import KluekitError

    if bool(cfg.group_column) == bool(cfg.pair_column):
        raise KluekitError("mine-negatives: give either --group-column (a QA set) or --pair-column (a pair file)")
    if cfg.range_max <= cfg.range_min:
        raise KluekitError(f"--range-max: {cfg.range_max} must be above --range-min ({cfg.range_min})")
    if cfg.num_negatives > cfg.range_max - cfg.range_min:
        raise KluekitError(f"--num-negatives: {cfg.num_negatives} is more than the {cfg.range_max - cfg.range_min} "
                           f"candidates between --range-min and --range-max")


def draw_pairs(n: int, cap: int, rng):
    """Up to ``cap`` distinct pairs of ``n`` items, as two index arrays (each pair once, in a random order).

    Pairs are drawn by rank (pair (i, j), i < j, has rank j(j-1)/2 + i), so a group of thousands of texts
    never spells out its million pairs.
    """
    import numpy as np

    total = n * (n - 1) // 2
    ranks = np.sort(rng.choice(total, size=min(cap, total), replace=False)).astype(np.int64)
    j = np.floor((1 + np.sqrt(1 + 8 * ranks.astype(np.float64))) / 2).astype(np.int64)
    j -= j * (j - 1) // 2 > ranks  # float rounding, either way
    j += (j + 1) * j // 2 <= ranks
    i = ranks - j * (j - 1) // 2
    flip = rng.random(len(ranks)) < 0.5
    return np.where(flip, j, i), np.where(flip, i, j)


def unique_pairs(pairs):
    """``pairs`` (anchor, positive) without identical texts and without a pair seen before in either order."""
    import numpy as np

    pairs = pairs[pairs["anchor"] != pairs["positive"]]
    low = np.where(pairs["anchor"] < pairs["positive"], pairs["anchor"], pairs["positive"])
    high = np.where(pairs["anchor"] < pairs["positive"], pairs["positive"], pairs["anchor"])
    return pairs[~pairs.assign(low=low, high=high).duplicated(["low", "high"]).to_numpy()].reset_index(drop=True)


def qa_pairs(members, cap: int, seed: int):
    """Positive pairs of a QA set: within each group (``members``: text, group; unique rows), up to ``cap``
    pairs of its texts drawn with ``seed``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    parts = []
    for _, texts in members.groupby("group", sort=True)["text"]:
        if len(texts) > 1:
            anchors, positives = draw_pairs(len(texts), cap, rng)
            texts = texts.to_numpy()
            parts.append(pd.DataFrame({"anchor": texts[anchors], "positive": texts[positives]}))
    return unique_pairs(pd.concat(parts, ignore_index=True)) if parts else pd.DataFrame(columns=["anchor", "positive"])


def read_pairs(cfg: MineOptions):
    """(positive pairs: anchor, positive; members: text, group; corpus) of ``--input``.

    ``members`` says which texts are known paraphrases of each other: a QA set's answer groups, or each
    given pair as a group of two. DataError for a missing column or an empty cell, KluekitError when no
    positive pair can be made.
    """
    import pandas as pd

    from .data.tables import check_not_empty, read_table, text_column
    from .errors import KluekitError

    frame = read_table(cfg.input)
    second = cfg.group_column or cfg.pair_column
    columns = [text_column(frame.columns, name, cfg.input) for name in (cfg.text_column, second)]
    check_not_empty(frame, cfg.input, columns)
    texts, other = (frame[column].str.strip() for column in columns)
    if cfg.group_column:
        members = pd.DataFrame({"text": texts, "group": other}).drop_duplicates(ignore_index=True)
        pairs = qa_pairs(members, cfg.max_positives_per_group, cfg.seed)
        why = f"no two different questions share a {columns[1]} value"
    else:
        pairs = unique_pairs(pd.DataFrame({"anchor": texts, "positive": other}))
        members = pd.concat([pd.DataFrame({"text": pairs[column], "group": pairs.index}) for column in pairs],
                            ignore_index=True)
        why = f"every row's {columns[0]} and {columns[1]} are the same text"
    if pairs.empty:
        raise KluekitError(f"{cfg.input}: no positive pair: {why}")
    corpus = list(dict.fromkeys(pd.concat([texts, other] if cfg.pair_column else [texts]).tolist()))
    return pairs, members, corpus


def mates_bound(members) -> int:
    """The most texts any text shares a group with, itself included: how many candidates can be dropped."""
    sizes = members["group"].map(members["group"].value_counts())
    return int(sizes.groupby(members["text"]).sum().max())


def mine(model, pairs, corpus: list[str], cfg: MineOptions, extra: int):
    """sentence-transformers' mining, ``extra`` candidates beyond ``--num-negatives`` per anchor (the ones that
    ``drop_related`` may drop): a table anchor, other, score (cosine), positives first per anchor, then its
    candidates from the closest down."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(
        Dataset.from_pandas(pairs[["anchor", "positive"]], preserve_index=False), model,
        anchor_column_name="anchor", positive_column_name="positive", corpus=corpus,
        range_min=cfg.range_min, range_max=cfg.range_max, relative_margin=cfg.margin,
        max_score=cfg.max_score if cfg.max_score < 1 else None,
        num_negatives=min(cfg.num_negatives + extra, cfg.range_max - cfg.range_min), sampling_strategy="top",
        output_format="labeled-pair", output_scores=True, batch_size=cfg.batch_size,
        faiss_batch_size=max(1, min(16384, SIMILARITY_CHUNK // len(corpus))), verbose=False)
    return mined.to_pandas().rename(columns={"positive": "other"})


def is_positive(mined, pairs):
    """Per mined row, whether it is one of the positive pairs (the rest are negative candidates)."""
    keys = pairs.rename(columns={"positive": "other"}).assign(_positive=True)
    return mined[["anchor", "other"]].merge(keys, how="left", on=["anchor", "other"])["_positive"].notna().to_numpy()


def drop_related(candidates, members):
    """``candidates`` less the anchor itself and the texts that share a group with the anchor."""
    rows = candidates[["anchor", "other"]].reset_index()
    anchor_groups = rows.merge(members.rename(columns={"text": "anchor"}), on="anchor")[["index", "group"]]
    other_groups = rows.merge(members.rename(columns={"text": "other"}), on="other")[["index", "group"]]
    related = anchor_groups.merge(other_groups, on=["index", "group"])["index"].unique()
    keep = ~candidates.index.isin(related) & (candidates["anchor"] != candidates["other"]).to_numpy()
    return candidates[keep]


def keep_best(candidates, n: int):
    """Each anchor's ``n`` closest candidates, in the mined order."""
    closest = candidates.sort_values("score", ascending=False, kind="stable")
    return closest.groupby("anchor", sort=False).head(n).sort_index()


def mined_table(model, pairs, members, corpus: list[str], cfg: MineOptions):
    """(positives, negatives): tables anchor, other, score (cosine), indexed in the order to write them."""
    mined = mine(model, pairs, corpus, cfg, extra=mates_bound(members))
    positive = is_positive(mined, pairs)
    negatives = keep_best(drop_related(mined[~positive], members), cfg.num_negatives)
    return mined[positive], negatives


def summary(positives, negatives, cfg: MineOptions) -> dict:
    """What was written and how close the pairs are, as ``mine_negatives`` prints and returns it."""
    written = positives if cfg.positives else positives.iloc[:0]
    per_anchor = negatives.groupby("anchor").size()
    anchors = positives["anchor"].drop_duplicates()
    return {"output": cfg.output, "anchors": int(anchors.size), "positives": len(written),
            "negatives": len(negatives),
            "short_anchors": int(anchors.size - (per_anchor.reindex(anchors).fillna(0) >= cfg.num_negatives).sum()),
            "mean_positive_cosine": float(positives["score"].mean()),
            "mean_negative_cosine": float(negatives["score"].mean())}


def output_frame(positives, negatives, cfg: MineOptions):
    """The rows to write: sentence1, sentence2, label, each anchor's positives before its negatives."""
    import pandas as pd

    parts = ([positives.assign(label=1)] if cfg.positives else []) + [negatives.assign(label=0)]
    rows = pd.concat(parts).sort_index()
    return rows.rename(columns={"anchor": "sentence1", "other": "sentence2"})[["sentence1", "sentence2", "label"]]


def mine_negatives(cfg: MineOptions) -> dict:
    """Write positive pairs and mined hard negatives of ``--input`` to ``--output``; print and return the counts
    and mean cosines. Nothing is written on bad input."""
    from .data.io import check_output_path, write_csv_atomic
    from .embedding.encoding import load_biencoder
    from .errors import KluekitError
    from .modeling import check_model_path

    check_options(cfg)
    check_output_path(cfg.output)
    check_model_path(cfg.model)
    try:
        import datasets  # noqa: F401  (mine_hard_negatives builds its output as a datasets.Dataset)
    except ImportError:
        raise KluekitError("mine-negatives needs the datasets package: pip install 'kluekit[mining]'") from None
    pairs, members, corpus = read_pairs(cfg)
    model = load_biencoder(cfg.model)
    positives, negatives = mined_table(model, pairs, members, corpus, cfg)
    if negatives.empty:
        raise KluekitError(f"{cfg.input}: no hard negative passed the filters; raise --range-max or lower "
                           f"--margin / --range-min")
    write_csv_atomic(output_frame(positives, negatives, cfg), cfg.output)
    result = summary(positives, negatives, cfg)
    short = f" ({result['short_anchors']} anchors with fewer than {cfg.num_negatives})" if result["short_anchors"] else ""
    print(f"anchors: {result['anchors']}, positives: {result['positives']}, negatives: {result['negatives']}{short}")
    print(f"mean cosine: anchor-positive {result['mean_positive_cosine']:.4f}, "
          f"anchor-negative {result['mean_negative_cosine']:.4f}")
    print(f"pairs written to {cfg.output}")
    return result


MINE_NEGATIVES = Command(MineOptions, "paraphrase pairs with mined hard negatives (from a QA set or a pair file), "
                                      "for training a pair classifier", "kluekit.mining:mine_negatives")
