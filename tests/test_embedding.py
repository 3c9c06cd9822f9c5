"""Bi-encoder: corpus readers, exact and FAISS search, index save/load/reuse, training that learns, and the
``train biencoder`` / ``encode`` / ``search`` commands (in-process, tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path
from test_cli import kluekit, one_error_line

from kluekit.embedding import corpus as corpus_module
from kluekit.embedding import index as index_module
from kluekit.embedding.corpus import build_index, read_corpus
from kluekit.embedding.encoding import encode, load_biencoder
from kluekit.embedding.index import EmbeddingIndex
from kluekit.errors import DataError, KluekitError

SENTENCES = ["오늘 날씨가 정말 좋네요.", "숙소 위치는 찾기 쉬웠습니다.", "호스트가 매우 친절했습니다.",
             "지하철역에서 걸어서 5분 거리입니다.", "방이 깨끗하고 조용했어요.", "다음에도 꼭 다시 오고 싶어요."]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unit_vectors(rows: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# ---- corpus readers ----------------------------------------------------------------------------------------

def test_read_corpus_table_formats_and_encodings(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text('id,sentence\n1,"가, 나"\n2,다라\n', encoding="utf-8")
    assert read_corpus(csv) == ["가, 나", "다라"]  # the column named 'sentence'
    assert read_corpus(csv, "id") == ["1", "2"]
    single = tmp_path / "single.csv"
    single.write_bytes("문장\n첫째\n\n둘째\n".encode("utf-8-sig"))  # BOM, a blank row skipped
    assert read_corpus(single) == ["첫째", "둘째"]
    tsv = tmp_path / "c.tsv"
    tsv.write_text('label\ttext\n1\t"따옴표" 그대로\n0\t둘\n', encoding="utf-8")
    assert read_corpus(tsv) == ['"따옴표" 그대로', "둘"]
    cp949 = tmp_path / "c.csv"
    cp949.write_bytes("text,n\n한국어 문장,1\n".encode("cp949"))
    assert read_corpus(cp949) == ["한국어 문장"]


def test_read_corpus_text_file(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_bytes("\ufeff첫 줄, 쉼표 포함\n\n  둘째 줄  \r\n셋째\n\n".encode("utf-8"))
    assert read_corpus(txt) == ["첫 줄, 쉼표 포함", "둘째 줄", "셋째"]
    euc = tmp_path / "euc.txt"
    euc.write_bytes("가나다\n라마바\n".encode("cp949"))
    assert read_corpus(euc) == ["가나다", "라마바"]


@pytest.mark.parametrize("name, content, column, message", [
    ("c.csv", "id,sentence\n1,가\n", "text", "{path}:1: text: missing column (found: id, sentence)"),
    ("c.csv", "a,b\n1,가\n", None, "{path}:1: several columns (a, b) and none named sentence or text: "
                                    "choose one with --column"),
    ("c.csv", "id,text\n1,가\n2, \n", None, "{path}:3: text: empty text"),
    ("c.csv", "text\n", None, "{path}:2: no data rows after the header"),
    ("c.txt", "\n  \n", None, "{path}:1: file is empty"),
    ("c.txt", "가\n", "text", "{path}:1: text: --column needs a CSV/TSV/JSON file"),
])
def test_read_corpus_errors_name_file_row_column(tmp_path, name, content, column, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_corpus(path, column)
    assert str(error.value).startswith(message.format(path=path))


# ---- index -------------------------------------------------------------------------------------------------

def test_exact_search_equals_brute_force(monkeypatch):
    corpus, queries = unit_vectors(500, 16, 0), unit_vectors(37, 16, 1)
    index = EmbeddingIndex(corpus, [str(i) for i in range(500)])
    scores, ids = index.search(queries, 7)
    full = queries @ corpus.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :7]
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (37, 7)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    monkeypatch.setattr(index_module, "QUERY_CHUNK_FLOATS", 1000)  # two queries per chunk: same answer
    np.testing.assert_array_equal(index.search(queries, 7)[1], expected)
    scores, ids = index.search(queries[:2], 10_000)  # k larger than the corpus: every row, sorted
    assert ids.shape == (2, 500) and sorted(ids[0]) == list(range(500))
    with pytest.raises(KluekitError, match="dimensions"):
        index.search(unit_vectors(1, 8, 2), 3)


def test_faiss_index_has_high_recall_against_exact():
    corpus, queries = unit_vectors(3000, 48, 3), unit_vectors(200, 48, 4)
    exact = EmbeddingIndex(corpus, [""] * 3000).search(queries, 10)[1]
    approx_scores, approx = EmbeddingIndex(corpus, [""] * 3000, kind="faiss").search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(approx_scores, np.take_along_axis(queries @ corpus.T, approx, axis=1), atol=1e-5)
    tiny = EmbeddingIndex(corpus[:3], ["a", "b", "c"], kind="faiss")  # a corpus smaller than k still works
    scores, ids = tiny.search(corpus[:2], 10)
    assert ids.shape == (2, 3) and ids[0, 0] == 0 and ids[1, 0] == 1 and (ids >= 0).all()


@pytest.mark.parametrize("kind", EmbeddingIndex.KINDS)
def test_index_save_load_round_trip(tmp_path, kind):
    vectors, texts = unit_vectors(300, 16, 5), [f"문장 {i}" for i in range(300)]
    index = EmbeddingIndex(vectors, texts, kind, meta={"model": "m", "column": None})
    index.save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    assert loaded.kind == kind and loaded.texts == texts and len(loaded) == 300
    np.testing.assert_array_equal(loaded.embeddings, vectors)
    assert loaded.meta["model"] == "m" and loaded.meta["count"] == 300 and loaded.meta["dim"] == 16
    queries = unit_vectors(20, 16, 6)
    for got, want in zip(loaded.search(queries, 5), index.search(queries, 5)):
        np.testing.assert_array_equal(got, want)
    EmbeddingIndex(vectors[:2], texts[:2], kind).save(tmp_path / "idx")  # replacing an index is allowed
    assert len(EmbeddingIndex.load(tmp_path / "idx")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary folders left behind


def test_index_load_and_save_errors(tmp_path):
    with pytest.raises(KluekitError, match="--index-dir: no such directory"):
        EmbeddingIndex.load(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(KluekitError, match="is not a kluekit index"):
        EmbeddingIndex.load(tmp_path / "other")
    with pytest.raises(KluekitError, match="exists and is not a kluekit index"):
        EmbeddingIndex(unit_vectors(2, 4, 0), ["a", "b"]).save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    EmbeddingIndex(unit_vectors(3, 4, 0), ["a", "b", "c"]).save(tmp_path / "idx")
    (tmp_path / "idx" / "texts.json").write_text(json.dumps(["a", "b"]), encoding="utf-8")
    with pytest.raises(KluekitError, match="damaged index"):
        EmbeddingIndex.load(tmp_path / "idx")
    with pytest.raises(KluekitError, match="--index: 'hnsw' is not one of exact, faiss"):
        EmbeddingIndex(unit_vectors(2, 4, 0), ["a", "b"], kind="hnsw")


# ---- encoding and build_index --------------------------------------------------------------------------------

def test_encode_gives_unit_float32_rows(tiny_biencoder, tiny_model):
    model = load_biencoder(str(tiny_biencoder), device="cpu")
    vectors = encode(model, SENTENCES, batch_size=4)
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert encode(model, []).shape == (0, 64)
    plain = load_biencoder(str(tiny_model), device="cpu")  # a plain BERT directory: mean pooling added
    np.testing.assert_allclose(encode(plain, SENTENCES), vectors, atol=1e-5)
    with pytest.raises(KluekitError, match="--model: no such directory"):
        load_biencoder("./no/such/model")


def test_build_index_encodes_once_and_reuses(tiny_biencoder, tmp_path, monkeypatch):
    calls = []
    real_encode = corpus_module.encode
    monkeypatch.setattr(corpus_module, "encode", lambda *a, **k: calls.append(len(a[1])) or real_encode(*a, **k))
    corpus = tmp_path / "corpus.csv"
    pd.DataFrame({"id": range(len(SENTENCES)), "sentence": SENTENCES}).to_csv(corpus, index=False)
    first = build_index(str(tiny_biencoder), corpus, index_dir=tmp_path / "idx", progress=False)
    assert calls == [len(SENTENCES)] and first.meta["column"] == "sentence"
    again = build_index(str(tiny_biencoder), corpus, index_dir=tmp_path / "idx", progress=False)
    assert calls == [len(SENTENCES)]  # same corpus, column, model: nothing encoded
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    approx = build_index(str(tiny_biencoder), corpus, kind="faiss", index_dir=tmp_path / "idx", progress=False)
    assert calls == [len(SENTENCES)] and approx.kind == "faiss"  # embeddings reused, only HNSW built
    assert EmbeddingIndex.load(tmp_path / "idx").kind == "faiss"
    build_index(str(tiny_biencoder), corpus, column="id", kind="faiss", index_dir=tmp_path / "idx", progress=False)
    assert calls == [len(SENTENCES)] * 2  # another column: encoded again
    corpus.write_text("sentence\n" + "\n".join(SENTENCES[:3]) + "\n", encoding="utf-8")
    changed = build_index(str(tiny_biencoder), corpus, kind="faiss", index_dir=tmp_path / "idx", progress=False)
    assert calls == [len(SENTENCES), len(SENTENCES), 3] and changed.texts == SENTENCES[:3]


# ---- training ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sts_files(tmp_path_factory, sts_train_csv):
    """200 KLUE-STS rows (CSV) + 40 KorSTS rows (TSV) for training; 200 other KLUE-STS rows as dev."""
    folder = tmp_path_factory.mktemp("sts")
    frame = pd.read_csv(sts_train_csv)
    frame.iloc[:200].to_csv(folder / "train.csv", index=False)
    frame.iloc[-200:].to_csv(folder / "dev.csv", index=False)
    korsts = shared_path("data", "korsts", "sts-train.tsv").read_text(encoding="utf-8").split("\n")
    (folder / "korsts.tsv").write_text("\n".join(korsts[:41]) + "\n", encoding="utf-8")
    return folder


def dev_spearman(model_dir, dev_path) -> float:
    """Spearman x100 of 5 x cosine on an STS file, for any encoder (a run, or the untrained tiny model)."""
    import torch

    from kluekit.inference import predict_raw
    from kluekit.tasks.biencoder import BiencoderTask

    task = BiencoderTask()
    tokenizer, model = task.load_model(model_dir, torch.device("cpu"))
    dev = task.read(dev_path)
    features = task.encode(dev, tokenizer, 128)
    raw = predict_raw(task, model, tokenizer, features, 64, torch.device("cpu"), progress=False)
    return task.metrics(task.outputs(raw), task.gold(dev))["spearman"]


def test_train_biencoder_learns_and_saves_a_sentence_transformer(tiny_model, sts_files, tmp_path):
    from sentence_transformers import SentenceTransformer

    run_dir = tmp_path / "run"
    result = kluekit("train", "biencoder", "--model", tiny_model, "--train", sts_files / "train.csv",
                     "--train", sts_files / "korsts.tsv", "--dev", sts_files / "dev.csv", "--output-dir", run_dir,
                     "--epochs", 3, "--batch-size", 16, "--learning-rate", 1e-3, "--no-tensorboard")
    assert result.returncode == 0, result.stderr
    assert "best dev (step" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    untrained = dev_spearman(tiny_model, sts_files / "dev.csv")
    best = metrics["best"]["spearman"]
    assert best > untrained + 5, (untrained, best)
    assert best == max(h["spearman"] for h in metrics["history"]) and len(metrics["history"]) == 3
    assert metrics["steps"] == 3 * 15 and metrics["train_examples_per_s"] > 0
    info = json.loads((run_dir / "kluekit.json").read_text(encoding="utf-8"))
    assert [d["path"] for d in info["data"]["train"]] == [str(sts_files / "train.csv"), str(sts_files / "korsts.tsv")]
    assert info["train_examples_after_augment"] == 240 and len(info["data"]["train"][1]["sha256"]) == 64
    assert [d["rows"] for d in info["data"]["train"]] == [200, 40] and info["task"] == "biencoder"

    loaded = SentenceTransformer(str(run_dir), device="cpu")  # plain sentence-transformers loads the run
    ours = load_biencoder(str(run_dir), device="cpu")
    np.testing.assert_allclose(loaded.encode(SENTENCES, normalize_embeddings=True), encode(ours, SENTENCES), atol=1e-5)
    assert dev_spearman(run_dir, sts_files / "dev.csv") == pytest.approx(best, abs=1e-3)  # the best epoch's model
    result = kluekit("evaluate", "biencoder", "--model", run_dir, "--input", sts_files / "dev.csv",
                     "--output-dir", tmp_path / "eval")
    assert result.returncode == 0 and f"spearman: {best:.2f}" in result.stdout
    result = kluekit("predict", "biencoder", "--model", run_dir, "--input", sts_files / "dev.csv",
                     "--output", tmp_path / "pred.csv")
    predicted = pd.read_csv(tmp_path / "pred.csv")
    assert result.returncode == 0 and len(predicted) == 200 and predicted["target"].between(0, 5).all()


def test_train_biencoder_prompt_is_saved_as_the_default_prompt(tiny_model, sts_files, tmp_path):
    from sentence_transformers import SentenceTransformer

    from kluekit.tasks.biencoder import BiencoderOptions, BiencoderTask

    result = kluekit("train", "biencoder", "--model", tiny_model, "--train", sts_files / "korsts.tsv",
                     "--output-dir", tmp_path / "run", "--epochs", 1, "--prompt", "query: ", "--no-tensorboard")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert config["prompts"][config["default_prompt_name"]] == "query: "
    model = SentenceTransformer(str(tmp_path / "run"), device="cpu")
    np.testing.assert_allclose(model.encode(SENTENCES[:2]), model.encode(["query: " + s for s in SENTENCES[:2]], prompt=""),
                               atol=1e-6)
    task = BiencoderTask(BiencoderOptions(prompt="query: "))
    pair = pd.DataFrame({"sentence1": ["가나"], "sentence2": ["다라"], "label": [1.0]})
    encoded = task.encode(pair, model.tokenizer, 128)  # the prompt goes before each sentence once
    assert encoded["a_input_ids"] == [model.tokenizer("query: 가나")["input_ids"]]
    assert encoded["b_input_ids"] == [model.tokenizer("query: 다라")["input_ids"]] and encoded["labels"] == [pytest.approx(0.2)]


def test_train_biencoder_bad_input_is_one_line_and_writes_nothing(tiny_model, sts_files, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence1,sentence2,label\n가,나,1\n다,라,7\n", encoding="utf-8")
    line = one_error_line(kluekit("train", "biencoder", "--model", tiny_model, "--train", sts_files / "train.csv", bad,
                                  "--output-dir", tmp_path / "run"))
    assert line == f"kluekit: error: {bad}:3: label: 7 is outside 0-5"
    line = one_error_line(kluekit("train", "biencoder", "--model", tmp_path / "nowhere", "--train", bad,
                                  "--output-dir", tmp_path / "run"))
    assert "7 is outside 0-5" in line  # data is checked before the model is loaded
    line = one_error_line(kluekit("train", "biencoder", "--model", tmp_path / "nowhere",
                                  "--train", sts_files / "train.csv", "--output-dir", tmp_path / "run"))
    assert line == f"kluekit: error: --model: no such directory '{tmp_path / 'nowhere'}'"
    line = one_error_line(kluekit("train", "biencoder", "--model", tiny_model, "--output-dir", tmp_path / "run"))
    assert line.startswith("kluekit: error: --train is required")
    assert not (tmp_path / "run").exists()


# ---- NLI stage ---------------------------------------------------------------------------------------------

def test_nli_triplets_from_the_real_files():
    from kluekit.embedding.nli import read_triplets

    paths = [shared_path("data", "klue_nli", "klue-nli-v1.1_dev.json"), shared_path("data", "kornli", "xnli.dev.ko.tsv"),
             shared_path("data", "kornli", "xnli.test.ko.tsv")]
    triplets, records = read_triplets([str(p) for p in paths])
    assert [(r["rows"], r["triplets"], r["premises_skipped"]) for r in records] == \
           [(3000, 1000, 0), (2490, 830, 0), (5010, 1670, 0)]  # every premise has one hypothesis of each label
    assert len(triplets) == 3500 and all(len(r["sha256"]) == 64 for r in records)
    premise, positive, negative = triplets[0]  # KLUE-NLI dev: the first premise's entailment and contradiction
    assert premise == "흡연자분들은 발코니가 있는 방이면 발코니에서 흡연이 가능합니다." and negative == "어떤 방에서도 흡연은 금지됩니다."
    assert '"' in "".join(t[0] for t in triplets[1000:])  # KorNLI's bare quotes are text (no CSV quoting)


def test_nli_triplet_construction_and_distinct_batches(tmp_path):
    from kluekit.data.nli_pairs import nli_triplets, read_nli
    from kluekit.embedding.nli import distinct_batches

    path = tmp_path / "nli.csv"
    path.write_text("premise,hypothesis,gold_label\n"
                    "p1,e1,entailment\np1,e2,Entailment\np1,c1,contradiction\np1,n1,neutral\n"
                    "p2,e3,entailment\np2,n2,neutral\n"  # no contradiction: skipped
                    "p3,c3,contradiction\np3,e4,entailment\np3,x,-\n", encoding="utf-8")  # '-': no gold label
    frame = read_nli(path)
    triplets, counts = nli_triplets(frame)
    assert triplets == [("p1", "e1", "c1"), ("p1", "e2", "c1"), ("p3", "e4", "c3")]
    assert counts == {"rows": 9, "triplets": 3, "premises_skipped": 1}
    rows = [(f"p{i // 3}", f"e{i}", f"c{i // 2}") for i in range(300)]  # premises x3, contradictions x2
    batches = distinct_batches(rows, 16, seed=1, epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(300))  # each row once
    for batch in batches:
        texts = [text for i in batch for text in rows[i]]
        assert len(texts) == len(set(texts)) and len(batch) <= 16
    assert sum(len(b) == 16 for b in batches) >= 17  # full batches, not singletons
    assert batches == distinct_batches(rows, 16, seed=1, epoch=0) != distinct_batches(rows, 16, seed=1, epoch=1)


@pytest.fixture(scope="module")
def nli_files(tmp_path_factory):
    """150 premises of KLUE-NLI dev (JSON) + 60 of XNLI dev (KorNLI TSV), 3 hypotheses each: 210 triplets."""
    folder = tmp_path_factory.mktemp("nli")
    records = json.loads(shared_path("data", "klue_nli", "klue-nli-v1.1_dev.json").read_text(encoding="utf-8"))
    (folder / "klue_nli.json").write_text(json.dumps(records[:450], ensure_ascii=False), encoding="utf-8")
    lines = shared_path("data", "kornli", "xnli.dev.ko.tsv").read_text(encoding="utf-8").split("\n")
    (folder / "xnli.tsv").write_text("\n".join(lines[:181]) + "\n", encoding="utf-8")
    return folder


def entailment_margin(model, triplets) -> float:
    """Mean cosine(premise, entailment) - mean cosine(premise, contradiction)."""
    vectors = [encode(model, [t[column] for t in triplets]) for column in range(3)]
    return float(np.mean(np.sum(vectors[0] * vectors[1], axis=1)) - np.mean(np.sum(vectors[0] * vectors[2], axis=1)))


def test_train_biencoder_nli_stage_learns_and_is_recorded(tiny_model, sts_files, nli_files, tmp_path):
    from kluekit.embedding.nli import read_triplets

    paths = [str(nli_files / "klue_nli.json"), str(nli_files / "xnli.tsv")]
    triplets, _ = read_triplets(paths)
    before = entailment_margin(load_biencoder(str(tiny_model), device="cpu"), triplets)
    run_dir = tmp_path / "run"
    # the STS stage at learning rate 0 leaves the NLI-trained weights as they are: the saved model is the NLI stage's
    result = kluekit("train", "biencoder", "--model", tiny_model, "--train", sts_files / "korsts.tsv",
                     "--dev", sts_files / "dev.csv", "--nli", *paths, "--nli-epochs", 3, "--nli-batch-size", 32,
                     "--nli-learning-rate", 1e-3, "--epochs", 1, "--learning-rate", 0, "--output-dir", run_dir,
                     "--no-tensorboard")
    assert result.returncode == 0, result.stderr
    after = entailment_margin(load_biencoder(str(run_dir), device="cpu"), triplets)
    assert after > before + 0.05, (before, after)

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    nli = metrics["stages"]["nli"]
    assert [(h["stage"], h["epoch"]) for h in nli["history"]] == [("nli", 1), ("nli", 2), ("nli", 3)]
    assert [h["epoch"] for h in metrics["history"]] == [1]
    drop = ("step", "epoch", "stage")
    assert {k: v for k, v in metrics["history"][0].items() if k not in drop} == \
           {k: v for k, v in nli["history"][-1].items() if k not in drop}  # STS at rate 0 changed nothing
    assert nli["train_examples_seen"] == 3 * 210 and nli["best"] is None  # NLI epochs are scored, never kept
    assert nli["steps"] >= 3 * 7 and metrics["steps"] == 2  # 40 KorSTS pairs, batch 32: a full and a part
    info = json.loads((run_dir / "kluekit.json").read_text(encoding="utf-8"))
    assert [(d["path"], d["rows"], d["triplets"]) for d in info["nli"]] == [(paths[0], 450, 150), (paths[1], 180, 60)]
    assert len(info["nli"][1]["sha256"]) == 64 and info["nli_triplets"] == 210
    assert info["task_options"]["nli_epochs"] == 3 and info["nli_steps"]["total_steps"] == nli["steps"]


def test_train_biencoder_bad_nli_file_is_one_line_and_writes_nothing(tiny_model, sts_files, tmp_path):
    korsts = sts_files / "korsts.tsv"  # an STS file: no gold_label column
    line = one_error_line(kluekit("train", "biencoder", "--model", tiny_model, "--train", korsts, "--nli", korsts,
                                  "--output-dir", tmp_path / "run"))
    assert line.startswith(f"kluekit: error: {korsts}:1: label: missing column (expected one of gold_label, label; ")
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tgold_label\n가\t나\tentailment\n가\t다\t0.5\n", encoding="utf-8")
    line = one_error_line(kluekit("train", "biencoder", "--model", tmp_path / "nowhere", "--train", korsts,
                                  "--nli", bad, "--output-dir", tmp_path / "run"))
    assert line == f"kluekit: error: {bad}:3: gold_label: '0.5' is not an NLI label " \
                   "(expected one of entailment, neutral, contradiction)"  # checked before the model is loaded
    neutral = tmp_path / "neutral.tsv"
    neutral.write_text("sentence1\tsentence2\tgold_label\n가\t나\tentailment\n가\t다\tneutral\n", encoding="utf-8")
    line = one_error_line(kluekit("train", "biencoder", "--model", tiny_model, "--train", korsts,
                                  "--nli", neutral, "--output-dir", tmp_path / "run"))
    assert line.startswith(f"kluekit: error: --nli: no premise in {neutral} has both an entailment and a contradiction")
    assert not (tmp_path / "run").exists()


# ---- encode / search commands -----------------------------------------------------------------------------

def test_encode_and_search_commands(tiny_biencoder, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    result = kluekit("encode", "--model", tiny_biencoder, "--corpus", corpus, "--index-dir", tmp_path / "idx",
                     "--index", "faiss")
    assert result.returncode == 0, result.stderr
    assert f"{len(SENTENCES)} texts, 64 dimensions, faiss index" in result.stdout
    assert "reused" in kluekit("encode", "--model", tiny_biencoder, "--corpus", corpus,
                               "--index-dir", tmp_path / "idx", "--index", "faiss").stdout

    result = kluekit("search", "--index-dir", tmp_path / "idx", "--query", SENTENCES[2], "--k", 3)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"query 0: {SENTENCES[2]}"
    rank, score, row, text = lines[1].split(maxsplit=3)
    assert (rank, row, text) == ("1", "2", SENTENCES[2]) and float(score) == pytest.approx(1.0, abs=1e-4)
    assert len(lines) == 4

    queries = tmp_path / "queries.csv"
    pd.DataFrame({"text": [SENTENCES[0], SENTENCES[4]]}).to_csv(queries, index=False)
    out = tmp_path / "results.csv"
    result = kluekit("search", "--index-dir", tmp_path / "idx", "--queries", queries, "--k", 2,
                     "--model", tiny_biencoder, "--output", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["query_id", "query", "rank", "score", "id", "text"]
    assert table["query_id"].tolist() == [0, 0, 1, 1] and table["id"].tolist()[::2] == [0, 4]


def test_encode_and_search_errors_exit_2_with_one_line(tiny_biencoder, tmp_path):
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("id,sentence\n1,가나다\n", encoding="utf-8")
    line = one_error_line(kluekit("encode", "--model", tiny_biencoder, "--corpus", corpus, "--column", "body",
                                  "--index-dir", tmp_path / "idx"))
    assert line == f"kluekit: error: {corpus}:1: body: missing column (found: id, sentence)"
    assert not (tmp_path / "idx").exists()
    line = one_error_line(kluekit("search", "--index-dir", tmp_path / "idx", "--query", "가"))
    assert line == f"kluekit: error: --index-dir: no such directory '{tmp_path / 'idx'}'; " \
                   "build an index with 'kluekit encode'"
    line = one_error_line(kluekit("search", "--index-dir", tmp_path))
    assert line == "kluekit: error: search: give queries with either --query TEXT or --queries FILE (not both)"
    result = kluekit("encode", "--model", tiny_biencoder, "--corpus", corpus, "--index-dir", tmp_path / "idx",
                     "--index", "ivf")
    assert result.returncode == 2 and "argument --index: invalid choice: 'ivf'" in result.stderr


def test_list_options_from_command_line_and_config_file(tmp_path):
    from kluekit.cli import build_parser
    from kluekit.config import build
    from kluekit.config import TrainConfig as TrainBiencoderOptions  # one TrainConfig for every task

    args = vars(build_parser().parse_args(["train", "biencoder", "--train", "a.csv", "b.tsv", "--train", "c.json"]))
    assert args["train"] == ["a.csv", "b.tsv", "c.json"] and "dev" not in args
    first = build(TrainBiencoderOptions, {"train": "only.csv"})  # a YAML/JSON config may give one file as a string
    assert first.train == ["only.csv"] and first.dev == []
    first.dev.append("x")
    assert build(TrainBiencoderOptions, {"train": ["a", "b"]}).dev == []  # each instance gets its own list
    with pytest.raises(KluekitError, match="--train is required"):
        build(TrainBiencoderOptions, {"train": []})
