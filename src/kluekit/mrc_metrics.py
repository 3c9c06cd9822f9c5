"""Extractive QA metrics as the two benchmarks define them, x100, the best over each question's gold answers.

KorQuAD 1.0 (the official ``evaluate-v1.0.py``, written from SQuAD v1.1's):
  normalisation = replace ' " 《 》 < > 〈 〉 ( ) ‘ ’ by a space, lower-case, drop ``string.punctuation``,
                  collapse whitespace (no article removal: Korean has none);
  exact_match   = normalised prediction == normalised gold;
  f1            = F1 over the multisets of characters of the normalised strings with the spaces removed
                  (0 when no character is shared).

KLUE-MRC (KLUE-baseline ``klue_mrc_em`` / ``klue_mrc_rouge_w``, ``metrics/utils.py``):
  normalisation = lower-case, then the baseline's ``NORMALIZE_CHAR_PATTERN`` (a character class followed by
                  the literal ``()‘’``: as written it only matches those five characters in a row, so
                  《 》 〈 〉 ‘ ’ stay), drop ``string.punctuation``, collapse whitespace (spaces stay);
  exact_match   = normalised prediction == normalised gold;
  rouge_w       = the baseline's "ROUGE-W": F1 (beta 1) of the longest common *consecutive* character
                  sequence (``difflib.SequenceMatcher.find_longest_match``) over the prediction's and the
                  gold's lengths; against an empty gold it is 1 for an empty prediction, else 0.
An unanswerable question (KLUE-MRC ``is_impossible``) has the one gold answer ``""`` in both.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from difflib import SequenceMatcher

import numpy as np

KORQUAD_SPACED = re.compile("['\"《》<>〈〉()‘’]")
KLUE_PATTERN = re.compile(r"[\'\"《》<>〈〉]\(\)\‘\’")  # KLUE-baseline's pattern, kept as it is (see above)
PUNCTUATION = set(string.punctuation)


def korquad_normalize(text: str) -> str:
    """KorQuAD's ``normalize_answer``."""
    text = KORQUAD_SPACED.sub(" ", text).lower()
    return " ".join("".join(c for c in text if c not in PUNCTUATION).split())


def klue_normalize(text: str) -> str:
    """KLUE-baseline's ``normalize_answer_for_klue_mrc``."""
    text = KLUE_PATTERN.sub(" ", text.lower())
    return " ".join("".join(c for c in text if c not in PUNCTUATION).split())


def korquad_f1(prediction: str, gold: str) -> float:
    """Character F1 (0-1) of one prediction against one gold answer, KorQuAD's ``f1_score``."""
    pred_chars = list(korquad_normalize(prediction).replace(" ", ""))
    gold_chars = list(korquad_normalize(gold).replace(" ", ""))
    same = sum((Counter(pred_chars) & Counter(gold_chars)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_chars), same / len(gold_chars)
    return 2 * precision * recall / (precision + recall)


def klue_rouge_w(prediction: str, gold: str) -> float:
    """KLUE-baseline's ``rouge_w_score_for_klue_mrc`` (0-1) on already normalised strings."""
    if gold == "":
        return float(prediction == gold)
    longest = SequenceMatcher(None, prediction, gold).find_longest_match(0, len(prediction), 0, len(gold)).size
    precision = longest / len(prediction) if prediction else 0.0
    recall = longest / len(gold)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _golds(answers) -> list[str]:
    answers = [str(a) for a in answers]
    return answers or [""]


def mrc_scores(predictions, gold_answers) -> dict[str, np.ndarray]:
    """Per question (0-1): KorQuAD ``exact_match`` and ``f1``, KLUE ``klue_exact_match`` and ``rouge_w``,
    each the best over that question's gold answers (none: the one answer ``""``)."""
    predictions = [str(p) for p in predictions]
    if len(predictions) != len(gold_answers):
        raise ValueError(f"got {len(predictions)} predictions for {len(gold_answers)} questions")
    scores = {name: np.zeros(len(predictions)) for name in ("exact_match", "f1", "klue_exact_match", "rouge_w")}
    for i, (prediction, answers) in enumerate(zip(predictions, gold_answers)):
        golds = _golds(answers)
        pred_k = korquad_normalize(prediction)
        scores["exact_match"][i] = max(float(pred_k == korquad_normalize(g)) for g in golds)
        scores["f1"][i] = max(korquad_f1(prediction, g) for g in golds)
        pred_l = klue_normalize(prediction)
        scores["klue_exact_match"][i] = max(float(pred_l == klue_normalize(g)) for g in golds)
        scores["rouge_w"][i] = max(klue_rouge_w(pred_l, klue_normalize(g)) for g in golds)
    return scores


def mrc_metrics(predictions, gold_answers) -> dict[str, float]:
    """Mean x100 of ``mrc_scores``: KorQuAD exact_match / f1 and KLUE-MRC klue_exact_match / rouge_w."""
    return {name: float(values.mean() * 100) if len(values) else 0.0
            for name, values in mrc_scores(predictions, gold_answers).items()}
