"""``kluekit mine-negatives``: positive pairs from a QA set or a pair file, hard negatives mined with
sentence-transformers, none of them a known paraphrase; the margin checked against our own cosines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path
from test_cli import kluekit, one_error_line

from kluekit.embedding.encoding import encode, load_biencoder
from kluekit.mining import draw_pairs

pytest.importorskip("datasets")

GROUPS = {  # answer -> questions: 30 rows, 8 answers; '배고파' twice in one group, '졸려' in two groups
    "맛있게 드세요.": ["배고파", "너무 배고프다", "밥 먹고 싶어", "점심 뭐 먹지", "저녁 메뉴 추천해줘", "배가 너무 고파요",
                   "뭐 먹을까", "배고파"],
    "푹 쉬세요.": ["너무 피곤해", "오늘 정말 피곤하다", "몸이 무거워", "쉬고 싶어", "졸려"],
    "감기 조심하세요.": ["감기 걸린 것 같아", "목이 아파", "콧물이 나와", "열이 나"],
    "여행은 언제나 좋죠.": ["여행 가고 싶다", "바다 보러 가고 싶어", "3박4일 놀러가고 싶다", "3박4일 정도 놀러가고 싶다"],
    "좋은 꿈 꾸세요.": ["잘 자", "이제 자야겠다", "졸려"],
    "힘내세요.": ["시험 망쳤어", "면접에서 떨어졌어"],
    "축하해요.": ["합격했어", "취업했어"],
    "비 오는 날엔 우산 챙기세요.": ["비가 와", "오늘 비 온대"],
}
QA = pd.DataFrame([(q, a) for a, questions in GROUPS.items() for q in questions], columns=["Q", "A"])
COLUMNS = ["sentence1", "sentence2", "label"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def qa_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("mining") / "qa.csv"
    QA.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cosine(tiny_biencoder):
    """Our own cosine of two texts, with the same model."""
    model = load_biencoder(str(tiny_biencoder), device="cpu")
    cache: dict[str, np.ndarray] = {}

    def similarity(a: str, b: str) -> float:
        missing = [t for t in (a, b) if t not in cache]
        cache.update(zip(missing, encode(model, missing)))
        return float(cache[a] @ cache[b])

    return similarity


def mine(tmp_path, model, path, *options) -> tuple[pd.DataFrame, str]:
    out = tmp_path / "pairs.csv"
    result = kluekit("mine-negatives", "--model", model, "--input", path, "--output", out, *options)
    assert result.returncode == 0, result.stderr
    return pd.read_csv(out), result.stdout


def groups_of(frame: pd.DataFrame) -> dict[str, set[str]]:
    return frame.groupby("Q")["A"].agg(set).to_dict()


def test_draw_pairs_are_distinct_within_range_and_seeded():
    anchors, positives = draw_pairs(7, 5, np.random.default_rng(0))
    pairs = {frozenset(p) for p in zip(anchors.tolist(), positives.tolist())}
    assert len(pairs) == 5 and all(len(p) == 2 and max(p) < 7 for p in pairs)
    all_pairs = draw_pairs(7, 100, np.random.default_rng(0))
    assert len({frozenset(p) for p in zip(*(a.tolist() for a in all_pairs))}) == 21  # every pair of 7, once
    again = draw_pairs(7, 5, np.random.default_rng(0))
    assert (again[0] == anchors).all() and (again[1] == positives).all()
    big = draw_pairs(100_000, 5, np.random.default_rng(1))  # 5e9 pairs: drawn by rank, never listed
    assert (big[0] != big[1]).all() and big[0].max() < 100_000


def test_qa_set_positives_share_a_group_and_negatives_never_do(tiny_biencoder, qa_csv, tmp_path):
    out, stdout = mine(tmp_path, tiny_biencoder, qa_csv, "--group-column", "A", "--max-positives-per-group", "3",
                       "--margin", "0")
    assert list(out.columns) == COLUMNS and set(out["label"]) == {0, 1}
    groups = groups_of(QA)
    positives, negatives = out[out["label"] == 1], out[out["label"] == 0]
    assert all(groups[a] & groups[b] for a, b in zip(positives["sentence1"], positives["sentence2"]))
    assert (positives["sentence1"] != positives["sentence2"]).all()
    assert not any(groups[a] & groups[b] for a, b in zip(negatives["sentence1"], negatives["sentence2"]))
    # at most 3 positives per answer group, all of them where the group has that many pairs
    per_group = pd.Series([min(groups[a] & groups[b]) for a, b in zip(positives["sentence1"], positives["sentence2"])])
    per_group = per_group.value_counts()
    assert per_group.max() <= 3 and len(positives) == 5 * 3 + 3
    assert set(negatives["sentence1"]) <= set(positives["sentence1"])
    assert f"positives: {len(positives)}, negatives: {len(negatives)}" in stdout
    assert "mean cosine: anchor-positive" in stdout


def test_num_negatives_and_margin_match_our_own_cosines(tiny_biencoder, qa_csv, tmp_path, cosine):
    """Each anchor's negatives are the closest texts outside its groups whose cosine is at most
    (1 - margin) x its lowest positive cosine: 2 of them wherever 2 exist."""
    margin = 0.002
    out, _ = mine(tmp_path, tiny_biencoder, qa_csv, "--group-column", "A", "--num-negatives", "2",
                  "--margin", str(margin))
    groups = groups_of(QA)
    texts = list(groups)
    dropped_by_margin = 0
    for anchor, rows in out.groupby("sentence1"):
        positive = min(cosine(anchor, b) for b in rows.loc[rows["label"] == 1, "sentence2"])
        threshold = (1 - margin) * positive
        outside = {t: cosine(anchor, t) for t in texts if not groups[t] & groups[anchor]}
        if any(abs(score - threshold) < 1e-5 for score in outside.values()):
            continue  # too close to the threshold to tell
        eligible = sorted((t for t, score in outside.items() if score <= threshold), key=outside.get, reverse=True)
        dropped_by_margin += sum(score > threshold for score in outside.values())
        assert set(rows.loc[rows["label"] == 0, "sentence2"]) == set(eligible[:2]), anchor
    assert dropped_by_margin > 0  # the margin did drop closer candidates
    counts = out[out["label"] == 0].groupby("sentence1").size()
    assert (counts == 2).sum() >= len(counts) // 2


def test_chatbot_head_realistic_run(tiny_biencoder, tmp_path):
    chatbot = pd.read_csv(shared_path("data", "chatbot", "ChatbotData.csv")).head(300)
    path = tmp_path / "chatbot.csv"
    chatbot.to_csv(path, index=False)
    out, stdout = mine(tmp_path, tiny_biencoder, path, "--group-column", "A", "--num-negatives", "2",
                       "--margin", "0.01", "--no-positives")
    assert list(out.columns) == COLUMNS and set(out["label"]) == {0}
    groups = groups_of(chatbot)
    assert not any(groups[a] & groups[b] for a, b in zip(out["sentence1"], out["sentence2"]))
    assert out.groupby("sentence1").size().max() <= 2
    assert "positives: 0," in stdout


def test_pair_file_mode(tiny_biencoder, tmp_path):
    pairs = pd.DataFrame({"sentence1": ["배고파", "너무 피곤해", "감기 걸린 것 같아", "여행 가고 싶다", "잘 자", "합격했어",
                                        "비가 와", "시험 망쳤어", "목이 아파"],
                          "sentence2": ["밥 먹고 싶어", "쉬고 싶어", "열이 나", "바다 보러 가고 싶어", "이제 자야겠다",
                                        "취업했어", "오늘 비 온대", "면접에서 떨어졌어", "감기 걸린 것 같아"]})
    path = tmp_path / "pairs.tsv"
    pairs.to_csv(path, sep="\t", index=False)
    out, _ = mine(tmp_path, tiny_biencoder, path, "--text-column", "sentence1", "--pair-column", "sentence2",
                  "--margin", "0")
    positives, negatives = out[out["label"] == 1], out[out["label"] == 0]
    given = {frozenset(p) for p in zip(pairs["sentence1"], pairs["sentence2"])}
    assert {frozenset(p) for p in zip(positives["sentence1"], positives["sentence2"])} == given
    assert len(positives) == len(pairs)
    assert not {frozenset(p) for p in zip(negatives["sentence1"], negatives["sentence2"])} & given
    assert (negatives["sentence1"] != negatives["sentence2"]).all()
    assert set(negatives["sentence2"]) <= set(pairs["sentence1"]) | set(pairs["sentence2"])
    assert set(negatives["sentence2"]) & (set(pairs["sentence2"]) - set(pairs["sentence1"]))  # both columns mined


def bad_run(tmp_path, *args) -> str:
    out = tmp_path / "never.csv"
    line = one_error_line(kluekit("mine-negatives", "--output", out, *args))
    assert not out.exists()
    return line


def test_bad_input_is_one_line_and_writes_nothing(tiny_biencoder, qa_csv, tmp_path):
    model = ["--model", tiny_biencoder]
    assert "found: Q, A" in bad_run(tmp_path, *model, "--input", qa_csv, "--group-column", "answer")
    assert "question: missing column" in bad_run(tmp_path, *model, "--input", qa_csv, "--group-column", "A",
                                                 "--text-column", "question")
    header_only = tmp_path / "header.csv"
    header_only.write_text("Q,A\n", encoding="utf-8")
    assert "no data rows" in bad_run(tmp_path, *model, "--input", header_only, "--group-column", "A")
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert "empty" in bad_run(tmp_path, *model, "--input", empty, "--group-column", "A")
    unique = tmp_path / "unique.csv"
    QA.drop_duplicates("A").to_csv(unique, index=False)
    assert "no positive pair" in bad_run(tmp_path, *model, "--input", unique, "--group-column", "A")
    assert "--model" in bad_run(tmp_path, "--model", tmp_path / "no-model", "--input", qa_csv, "--group-column", "A")
    assert "either --group-column" in bad_run(tmp_path, *model, "--input", qa_csv)
    assert "--range-max" in bad_run(tmp_path, *model, "--input", qa_csv, "--group-column", "A", "--range-min", "60")


def test_help_lists_the_options():
    result = kluekit("mine-negatives", "--help")
    assert result.returncode == 0
    for option in ("--group-column", "--pair-column", "--num-negatives", "--range-min", "--range-max", "--margin",
                   "--max-score", "--no-positives", "--max-positives-per-group", "--seed"):
        assert option in result.stdout, option


@pytest.mark.slow
def test_e5_negatives_are_closer_than_random_texts(tmp_path):
    """With a real encoder, mined negatives are closer to their anchors than random questions are."""
    e5 = shared_path("models", "e5-small-ko")
    chatbot = pd.read_csv(shared_path("data", "chatbot", "ChatbotData.csv")).head(300)
    path = tmp_path / "chatbot.csv"
    chatbot.to_csv(path, index=False)
    out, stdout = mine(tmp_path, e5, path, "--group-column", "A")
    model = load_biencoder(str(e5), device="cpu")
    negatives = out[out["label"] == 0]
    a, b = encode(model, negatives["sentence1"].tolist()), encode(model, negatives["sentence2"].tolist())
    shuffled = np.random.default_rng(0).permutation(len(b))
    assert (a * b).sum(1).mean() > (a * b[shuffled]).sum(1).mean() + 0.02  # e5 cosines sit in 0.8-1
