"""KLUE-NER metrics: hand-computed values, agreement with seqeval (KLUE-baseline's entity F1) and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import seqeval.metrics as seqeval_metrics  # test extra: KLUE-baseline's own entity F1, to check ours against
import seqeval.scheme as seqeval_scheme
import sklearn.metrics

from kluekit.data.ner import NER_LABELS
from kluekit.metrics import iob2_entities, ner_char_f1, ner_entity_f1, ner_metrics

KLUE = list(NER_LABELS)


def klue_entity_f1(pred, gold, labels):
    """KLUE-baseline's klue_ner_entity_macro_f1: every sentence's tags as ONE sequence, seqeval strict IOB2."""
    pred = [labels[i] for i in np.concatenate(pred)]
    gold = [labels[i] for i in np.concatenate(gold)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns for types with no gold or no predicted entity
        return seqeval_metrics.f1_score([gold], [pred], average="macro", mode="strict",
                                        scheme=seqeval_scheme.IOB2) * 100.0


def klue_char_f1(pred, gold, labels, include_o):
    """KLUE-baseline's klue_ner_char_macro_f1 (include_o=True, what its code does) or without O (the paper)."""
    scored = [i for i, name in enumerate(labels) if include_o or name != "O"]
    return sklearn.metrics.f1_score(np.concatenate(gold), np.concatenate(pred), labels=scored, average="macro",
                                    zero_division=1) * 100.0


# A hand-computed example. Labels: 0 B-PS, 1 I-PS, 2 B-LC, 3 I-LC, 4 B-OG, 5 I-OG, 6 O (OG never occurs).
#   sentence 1  gold  B-PS I-PS O B-LC I-LC O     entities PS[0,2) LC[3,5)
#               pred  B-PS I-PS O B-LC O    O     entities PS[0,2) right, LC[3,4) wrong end
#   sentence 2  gold  B-PS O B-LC                 entities PS[6,7) LC[8,9)
#               pred  I-PS O B-LC                 I-PS opens no entity (strict IOB2); LC[8,9) right
# entity F1 per type: PS gold 2, pred 1, found 1 -> P 1, R 1/2, F1 2/3
#                     LC gold 2, pred 2, found 1 -> P 1/2, R 1/2, F1 1/2
#                     OG occurs in neither: not averaged
#   macro = (2/3 + 1/2) / 2 = 7/12 -> 58.333
# char F1 per label (flat gold 0 1 6 2 3 6 0 6 2, flat pred 0 1 6 2 6 6 1 6 2), F1 = 2TP / (#gold + #pred):
#   B-PS: gold 2, pred 1, TP 1 -> 2/3      I-PS: gold 1, pred 2, TP 1 -> 2/3
#   B-LC: gold 2, pred 2, TP 2 -> 1        I-LC: gold 1, pred 0, TP 0 -> 0
#   B-OG, I-OG: neither gold nor predicted -> 1 (zero_division=1)
#   O:    gold 3, pred 4, TP 3 -> 6/7
#   char_f1 (without O) = (2/3 + 2/3 + 1 + 0 + 1 + 1) / 6 = (13/3) / 6 = 13/18 -> 72.222
#   char_f1_with_o = (13/3 + 6/7) / 7 = (91/21 + 18/21) / 7 = 109/147 -> 74.150
LABELS = ["B-PS", "I-PS", "B-LC", "I-LC", "B-OG", "I-OG", "O"]
GOLD = [[0, 1, 6, 2, 3, 6], [0, 6, 2]]
PRED = [[0, 1, 6, 2, 6, 6], [1, 6, 2]]


def test_hand_computed_example():
    scores = ner_metrics(PRED, GOLD, LABELS)
    assert scores["entity_f1"] == pytest.approx(700 / 12)
    assert scores["char_f1"] == pytest.approx(1300 / 18)
    assert scores["char_f1_with_o"] == pytest.approx(10900 / 147)
    assert scores["entity_f1"] == pytest.approx(klue_entity_f1(PRED, GOLD, LABELS))
    assert scores["char_f1"] == pytest.approx(klue_char_f1(PRED, GOLD, LABELS, include_o=False))
    assert scores["char_f1_with_o"] == pytest.approx(klue_char_f1(PRED, GOLD, LABELS, include_o=True))


def test_flat_and_ragged_inputs_agree():
    flat_pred, flat_gold = np.concatenate(PRED), np.concatenate(GOLD)
    expected = ner_metrics(PRED, GOLD, LABELS)
    assert ner_metrics(flat_pred, flat_gold, LABELS) == expected
    assert ner_metrics(flat_pred.tolist(), flat_gold.tolist(), LABELS) == expected
    assert ner_metrics([np.array(p) for p in PRED], GOLD, LABELS) == expected
    assert ner_metrics(flat_pred, GOLD, LABELS) == expected  # flat against per-sentence: compared as a whole


def test_strict_iob2_entities():
    labels = ["B-PS", "I-PS", "B-LC", "I-LC", "O"]
    #           0     1     2     3     4     5     6     7     8     9
    tags = ["I-PS", "I-PS", "B-PS", "I-PS", "I-LC", "B-LC", "B-LC", "I-LC", "O", "B-PS"]
    starts, ends, types = iob2_entities(np.array([labels.index(t) for t in tags]), labels)
    # types index sorted(["LC", "PS"]): LC = 0, PS = 1. I-PS at 0-1: no B, no entity; B-PS I-PS at 2-3; I-LC at 4
    # follows I-PS (another type): no entity; B-LC at 5 alone; B-LC I-LC at 6-7; B-PS at 9 closes at the end
    assert list(zip(starts.tolist(), ends.tolist(), types.tolist())) == [(2, 4, 1), (5, 6, 0), (6, 8, 0),
                                                                         (9, 10, 1)]


def test_no_entities_and_types_only_predicted():
    labels = ["B-PS", "I-PS", "B-LC", "I-LC", "O"]
    # no entity in gold or prediction (stray I- only): seqeval returns NaN (mean over no type); we return 0
    assert ner_entity_f1([[4, 1, 4]], [[4, 4, 4]], labels) == 0.0
    assert np.isnan(klue_entity_f1([[4, 1, 4]], [[4, 4, 4]], labels))
    # LC only predicted: PS F1 1, LC F1 0 -> 50
    assert ner_entity_f1([[0, 2]], [[0, 4]], labels) == pytest.approx(50.0)
    assert klue_entity_f1([[0, 2]], [[0, 4]], labels) == pytest.approx(50.0)
    # gold PS not found and nothing predicted: 0
    assert ner_entity_f1([[4, 4]], [[0, 1]], labels) == 0.0


def test_sentences_are_concatenated_as_klue_does():
    labels = ["B-PS", "I-PS", "O"]
    # gold: sentence 1 ends with B-PS, sentence 2 opens with I-PS: ONE entity [0, 2) once concatenated,
    # so predicting B-PS | O (right for sentence 1 alone) finds nothing: F1 0, as in KLUE-baseline
    assert ner_entity_f1([[0], [2]], [[0], [1]], labels) == 0.0
    assert klue_entity_f1([[0], [2]], [[0], [1]], labels) == 0.0


def test_random_sequences_match_seqeval_and_sklearn():
    rng = np.random.default_rng(0)
    for trial in range(300):
        labels = KLUE if trial % 3 else ["B-A", "I-A", "O", "B-B", "I-B"]  # O need not come last
        lengths = rng.integers(1, 30, size=rng.integers(1, 6))
        gold = [rng.integers(0, len(labels), size=n) for n in lengths]
        # predictions: mostly gold, the rest random, so many spans match, some partly, many I- start invalid
        pred = [np.where(rng.random(n) < 0.6, g, rng.integers(0, len(labels), size=n)) for n, g in zip(lengths, gold)]
        scores = ner_metrics(pred, gold, labels)
        reference = klue_entity_f1(pred, gold, labels)
        if np.isnan(reference):
            assert scores["entity_f1"] == 0.0
        else:
            assert scores["entity_f1"] == pytest.approx(reference, abs=1e-9), (trial, pred, gold)
        assert scores["char_f1"] == pytest.approx(klue_char_f1(pred, gold, labels, False), abs=1e-9)
        assert scores["char_f1_with_o"] == pytest.approx(klue_char_f1(pred, gold, labels, True), abs=1e-9)


def test_long_input_with_realistic_errors():
    rng = np.random.default_rng(1)  # seqeval needs ~15 s for 200,000 tags (KLUE dev: 286,000)
    gold = rng.choice(len(KLUE), size=20_000, p=[.01, .03, .01, .02, .01, .03, .02, .04, .01, .03, .005, .01, .775])
    pred = np.where(rng.random(gold.size) < 0.9, gold, KLUE.index("O"))
    scores = ner_metrics(pred, gold, KLUE)
    assert scores["entity_f1"] == pytest.approx(klue_entity_f1([pred], [gold], KLUE), abs=1e-9)
    assert scores["char_f1"] == pytest.approx(klue_char_f1([pred], [gold], KLUE, False), abs=1e-9)


def test_bad_inputs():
    with pytest.raises(ValueError, match="sentence 1: 2 predicted tags but 3 gold tags"):
        ner_metrics([[0, 1], [2, 2]], [[0, 1], [2, 2, 2]], LABELS)
    with pytest.raises(ValueError, match="^3 predicted tags but 2 gold tags"):
        ner_metrics([0, 1, 2], [0, 1], LABELS)
    with pytest.raises(ValueError, match="2 predicted sentences but 1 gold"):
        ner_metrics([[0], [1]], [[0]], LABELS)
    with pytest.raises(ValueError, match=r"pred\[1\] = 7 is not a class id"):
        ner_metrics([[0, 7]], [[0, 1]], LABELS)
    with pytest.raises(ValueError, match=r"gold\[0\] = -100"):
        ner_metrics([0, 1], [-100, 1], LABELS)
    with pytest.raises(ValueError, match="'O'"):
        ner_metrics([0], [0], ["B-PS", "I-PS"])
    with pytest.raises(ValueError, match="'PS' is not O, B-<type> or I-<type>"):
        ner_entity_f1([0], [0], ["PS", "O"])
    with pytest.raises(ValueError, match="at least one tag"):
        ner_metrics([], [], LABELS)
    with pytest.raises(ValueError, match="no label other than O"):
        ner_char_f1([0], [0], ["O"])
