"""KorQuAD exact match / character F1 and KLUE-MRC exact match / ROUGE-W: hand-computed values, and agreement with
the official definitions (the KorQuAD v1.0 evaluation script and KLUE-baseline's functions, restated below)."""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from difflib import SequenceMatcher

import pytest
from conftest import shared_path

from kluekit.data.mrc import read_mrc
from kluekit.metrics import mrc_metrics
from kluekit.mrc_metrics import klue_normalize, klue_rouge_w, korquad_f1, korquad_normalize, mrc_scores


def test_hand_computed_korquad_values():
    # "1989년2월15일" (10 characters) against "1989년2월" (7): 7 shared, P 0.7, R 1 -> F1 = 1.4 / 1.7
    assert korquad_f1("1989년 2월 15일", "1989년 2월") == pytest.approx(1.4 / 1.7)
    assert korquad_normalize("《훈민정음》 (訓民正音)") == "훈민정음 訓民正音"
    assert korquad_normalize("  The  \"ABC\"! ") == "the abc"
    assert korquad_f1("세종", "태조") == 0.0
    metrics = mrc_metrics(["《훈민정음》", "세종", "1989년 2월 15일"], [["훈민정음"], ["세종대왕", "세종"], ["1989년 2월"]])
    assert metrics["exact_match"] == pytest.approx(200 / 3)
    assert metrics["f1"] == pytest.approx((1 + 1 + 1.4 / 1.7) / 3 * 100)


def test_hand_computed_klue_values():
    # KLUE-baseline's normalisation keeps 《 》 (its pattern needs them followed by "()‘’"); " is punctuation
    assert klue_normalize("《훈민정음》") == "《훈민정음》" and klue_normalize('"세종"') == "세종"
    # longest common consecutive run 4 of 6 and 4 of 4 characters: 2 * (2/3) * 1 / (2/3 + 1) = 0.8
    assert klue_rouge_w("《훈민정음》", "훈민정음") == pytest.approx(0.8)
    # consecutive, not the LCS: "가나다라" / "가다" share the run "가" (1), P 1/4, R 1/2 -> 1/3 (the LCS would give 2/3)
    assert klue_rouge_w("가나다라", "가다") == pytest.approx(1 / 3)
    assert klue_rouge_w("", "") == 1.0 and klue_rouge_w("세종", "") == 0.0 and klue_rouge_w("", "세종") == 0.0
    metrics = mrc_metrics(["《훈민정음》", '"세종"', "세종대왕"], [["훈민정음"], ["세종"], ["세종"]])
    assert metrics["klue_exact_match"] == pytest.approx(100 / 3)
    assert metrics["rouge_w"] == pytest.approx((0.8 + 1 + 2 * 0.5 / 1.5) / 3 * 100)


def test_unanswerable_questions_have_the_empty_gold_answer():
    scores = mrc_scores(["", "세종"], [[], []])
    assert scores["exact_match"].tolist() == [1.0, 0.0] and scores["klue_exact_match"].tolist() == [1.0, 0.0]
    assert scores["rouge_w"].tolist() == [1.0, 0.0]
    assert scores["f1"].tolist() == [0.0, 0.0]  # KorQuAD's F1 of two empty strings is 0, as its script computes
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        mrc_scores(["a", "b"], [["a"]])


# ---- the official definitions, restated from their sources, to compare against --------------------------------

def official_korquad_normalize(s):
    def remove_(text):
        for char in ["'", '"', "《", "》", "<", ">", "〈", "〉", "\\(", "\\)", "‘", "’"]:
            text = re.sub(char, " ", text)
        return text

    exclude = set(string.punctuation)
    return " ".join("".join(ch for ch in remove_(s).lower() if ch not in exclude).split())


def official_korquad_f1(prediction, ground_truth):
    prediction_chars = [c for tok in official_korquad_normalize(prediction).split() for c in tok]
    truth_chars = [c for tok in official_korquad_normalize(ground_truth).split() for c in tok]
    common = Counter(prediction_chars) & Counter(truth_chars)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision, recall = num_same / len(prediction_chars), num_same / len(truth_chars)
    return 2 * precision * recall / (precision + recall)


KLUE_PATTERN = re.compile(r"[\'\"《》<>〈〉]\(\)\‘\’")


def official_klue_normalize(answer):
    answer = KLUE_PATTERN.sub(" ", answer.lower())
    answer = "".join(c for c in answer if c not in set(string.punctuation))
    return " ".join(answer.split())


def official_klue_rouge_w(pred, label, beta=1):
    if label == "":
        return float(pred == label)
    matcher = SequenceMatcher(None, pred, label)
    longest = matcher.find_longest_match(0, len(pred), 0, len(label)).size
    precision = longest / len(pred) if len(pred) else 0.0
    recall = longest / len(label) if len(label) else 0.0
    if precision + recall == 0.0:
        return 0.0
    return (1 + beta ** 2) * (precision * recall) / (beta ** 2 * precision + recall)


def test_agrees_with_the_official_definitions_on_korquad_answers():
    """Predictions made from the dev answers by cutting, extending into the context and adding punctuation."""
    frame = read_mrc(shared_path("data", "korquad", "KorQuAD_v1.0_dev.json")).iloc[::7]
    rng = random.Random(0)
    predictions, golds = [], []
    for context, answers, starts in zip(frame["context"], frame["answers"], frame["answer_starts"]):
        start, end = starts[0], starts[0] + len(answers[0])
        exact = rng.random() < 0.5
        a = start if exact else max(0, start + rng.randint(-6, 3))
        b = end if exact else min(len(context), end + rng.randint(-3, 6))
        prediction = context[a:max(a, b)]
        if rng.random() < 0.2:
            prediction = f"《{prediction}》"
        if rng.random() < 0.1:
            prediction = prediction.upper() + " (" + rng.choice(["'", '"', "‘", "〈"])
        predictions.append(prediction)
        golds.append(answers)
    scores = mrc_scores(predictions, golds)
    em = [max(float(official_korquad_normalize(p) == official_korquad_normalize(g)) for g in gold)
          for p, gold in zip(predictions, golds)]
    f1 = [max(official_korquad_f1(p, g) for g in gold) for p, gold in zip(predictions, golds)]
    klue_em = [max(float(official_klue_normalize(p) == official_klue_normalize(g)) for g in gold)
               for p, gold in zip(predictions, golds)]
    rouge = [max(official_klue_rouge_w(official_klue_normalize(p), official_klue_normalize(g)) for g in gold)
             for p, gold in zip(predictions, golds)]
    assert scores["exact_match"].tolist() == em and scores["klue_exact_match"].tolist() == klue_em
    assert scores["f1"].tolist() == pytest.approx(f1) and scores["rouge_w"].tolist() == pytest.approx(rouge)
    assert 0.2 < sum(em) / len(em) < 0.9 and 0.5 < sum(f1) / len(f1) < 0.98  # the cases are mixed
