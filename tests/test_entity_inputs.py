"""Entity-aware RE inputs (kluekit.data.entity_inputs): markers at offsets, pair form, windowing long rows.

Tokenizers: the real e5-small-ko tokenizer from ../shared/models (SentencePiece, no token_type_ids) and a
tiny WordPiece trained here on KLUE-RE sentences (BERT-style, with token_type_ids).
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from kluekit.data.entity_inputs import (ELISION, MARKER_TOKENS, STYLES, encode_relations, entity_positions,
                                        entity_texts, mark_entities, markers)
from kluekit.data.re import COMPETITION_LABELS, read_re
from kluekit.errors import KluekitError

from conftest import shared_path

SENTENCE = "〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다."
SUBJ, OBJ = (24, 26, "ORG"), (13, 18, "PER")  # 비틀즈, 조지 해리슨: the subject comes after the object


@pytest.fixture(scope="module")
def e5():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(shared_path("models", "e5-small-ko")))
    tokenizer.add_special_tokens({"additional_special_tokens": list(MARKER_TOKENS)})
    return tokenizer


@pytest.fixture(scope="module")
def dev():
    return read_re(shared_path("data", "klue_re", "boostcamp_test_data_with_labels.csv"), COMPETITION_LABELS)


@pytest.fixture(scope="module")
def wordpiece(dev):
    """A BERT-style WordPiece tokenizer (1,500 pieces) trained on 3,000 dev sentences, markers added."""
    from tiny_model import build_tiny_tokenizer

    fast = build_tiny_tokenizer(dev["sentence"].head(3000).tolist(), vocab_size=1500)
    fast.add_special_tokens({"additional_special_tokens": list(MARKER_TOKENS)})
    return fast


def frame_of(*rows) -> pd.DataFrame:
    """A read_re-like table from (sentence, (start, end, type) subject, (start, end, type) object) rows."""
    records = []
    for i, (sentence, (s0, s1, st), (o0, o1, ot)) in enumerate(rows):
        records.append(dict(id=f"r{i}", sentence=sentence, subj_word=sentence[s0:s1 + 1], subj_start=s0, subj_end=s1,
                            subj_type=st, obj_word=sentence[o0:o1 + 1], obj_start=o0, obj_end=o1, obj_type=ot))
    return pd.DataFrame(records)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- markers at offsets ---------------------------------------------------------------------------

def test_each_style_subject_after_object():
    assert mark_entities(SENTENCE, SUBJ, OBJ, "marker") == (
        "〈Something〉는 [E2] 조지 해리슨 [/E2]이 쓰고 [E1] 비틀즈 [/E1]가 1969년 앨범 《Abbey Road》에 담은 노래다.")
    assert mark_entities(SENTENCE, SUBJ, OBJ, "typed") == (
        "〈Something〉는 # ^ PER ^ 조지 해리슨 #이 쓰고 @ * ORG * 비틀즈 @가 1969년 앨범 《Abbey Road》에 담은 노래다.")
    assert mark_entities(SENTENCE, SUBJ, OBJ, "baseline") == SENTENCE
    # subject before object
    assert mark_entities(SENTENCE, OBJ, SUBJ, "typed") == (
        "〈Something〉는 @ * PER * 조지 해리슨 @이 쓰고 # ^ ORG ^ 비틀즈 #가 1969년 앨범 《Abbey Road》에 담은 노래다.")
    assert STYLES == ("baseline", "marker", "typed") and MARKER_TOKENS == ("[E1]", "[/E1]", "[E2]", "[/E2]")


def test_a_word_that_occurs_twice_is_marked_where_its_offsets_are():
    sentence = "비틀즈는 비틀즈를 넘어섰다."
    second, first = (5, 7, "ORG"), (0, 2, "ORG")
    assert mark_entities(sentence, second, first, "marker") == "[E2] 비틀즈 [/E2]는 [E1] 비틀즈 [/E1]를 넘어섰다."
    assert mark_entities(sentence, first, second, "marker") == "[E1] 비틀즈 [/E1]는 [E2] 비틀즈 [/E2]를 넘어섰다."
    assert mark_entities(sentence, second, first, "typed") == "# ^ ORG ^ 비틀즈 #는 @ * ORG * 비틀즈 @를 넘어섰다."


@pytest.mark.parametrize("subj, obj, marker, typed", [
    # touching (end + 1 == start of the other): the closing marker comes first
    ((0, 4, "ORG"), (5, 6, "ORG"), "[E1] 서울대학교 [/E1][E2] 병원 [/E2]에서",
     "@ * ORG * 서울대학교 @# ^ ORG ^ 병원 #에서"),
    ((5, 6, "ORG"), (0, 4, "ORG"), "[E2] 서울대학교 [/E2][E1] 병원 [/E1]에서",
     "# ^ ORG ^ 서울대학교 #@ * ORG * 병원 @에서"),
    # nested: the outer span opens first and closes last
    ((0, 6, "ORG"), (0, 4, "ORG"), "[E1] [E2] 서울대학교 [/E2]병원 [/E1]에서",
     "@ * ORG * # ^ ORG ^ 서울대학교 #병원 @에서"),
    ((0, 6, "ORG"), (5, 6, "LOC"), "[E1] 서울대학교[E2] 병원 [/E2] [/E1]에서",
     "@ * ORG * 서울대학교# ^ LOC ^ 병원 # @에서"),
    ((5, 6, "LOC"), (0, 6, "ORG"), "[E2] 서울대학교[E1] 병원 [/E1] [/E2]에서",
     "# ^ ORG ^ 서울대학교@ * LOC * 병원 @ #에서"),
    # the same span: the subject is the outer one
    ((5, 6, "ORG"), (5, 6, "LOC"), "서울대학교[E1] [E2] 병원 [/E2] [/E1]에서",
     "서울대학교@ * ORG * # ^ LOC ^ 병원 # @에서"),
    # crossing: each marker at its own offset, so the markers cross
    ((0, 3, "ORG"), (2, 5, "ORG"), "[E1] 서울[E2] 대학 [/E1]교병 [/E2]원에서",
     "@ * ORG * 서울# ^ ORG ^ 대학 @교병 #원에서"),
    ((2, 5, "ORG"), (0, 3, "ORG"), "[E2] 서울[E1] 대학 [/E2]교병 [/E1]원에서",
     "# ^ ORG ^ 서울@ * ORG * 대학 #교병 @원에서"),
], ids=["touching", "touching-reversed", "nested-start", "nested-end", "nested-subject-inner", "same-span",
        "crossing", "crossing-reversed"])
def test_touching_nested_and_crossing_entities(subj, obj, marker, typed):
    sentence = "서울대학교병원에서"
    assert mark_entities(sentence, subj, obj, "marker") == marker
    assert mark_entities(sentence, subj, obj, "typed") == typed


def test_unknown_style():
    with pytest.raises(KluekitError) as info:
        mark_entities(SENTENCE, SUBJ, OBJ, "markers")
    assert str(info.value) == "unknown entity style 'markers' (choose from baseline, marker, typed)"


# --- encoding -------------------------------------------------------------------------------------

def test_baseline_pair_form(e5, wordpiece):
    frame = frame_of((SENTENCE, SUBJ, OBJ))
    assert entity_texts(frame, "baseline", e5.sep_token) == (["비틀즈</s>조지 해리슨"], [SENTENCE])
    assert entity_texts(frame, "marker") == (None, [mark_entities(SENTENCE, SUBJ, OBJ, "marker")])
    out = encode_relations(frame, e5, 128, "baseline")
    assert list(out) == ["input_ids", "attention_mask"]  # e5 (XLM-R) has no token_type_ids
    assert out["input_ids"] == e5(["비틀즈</s>조지 해리슨"], [SENTENCE])["input_ids"]
    assert e5.decode(out["input_ids"][0]) == f"<s> 비틀즈</s> 조지 해리슨</s></s> {SENTENCE}</s>"

    out = encode_relations(frame, wordpiece, 128, "baseline")
    assert list(out) == ["input_ids", "attention_mask", "token_type_ids"]
    ids, types = out["input_ids"][0], out["token_type_ids"][0]
    tokens = wordpiece.convert_ids_to_tokens(ids)
    second = tokens.index("[SEP]", tokens.index("[SEP]") + 1)  # the pair's own [SEP] comes after the inserted one
    assert squash(wordpiece.decode(ids[:second + 1])) == "[CLS]비틀즈[SEP]조지해리슨[SEP]"
    assert types == [0] * (second + 1) + [1] * (len(ids) - second - 1)
    assert out["attention_mask"][0] == [1] * len(ids)


def test_rows_that_fit_are_encoded_as_they_are(e5, dev):
    rows = dev.head(200)
    for style in STYLES:
        firsts, texts = entity_texts(rows, style, e5.sep_token)
        expected = e5(firsts, texts) if firsts else e5(texts)
        out = encode_relations(rows, e5, 512, style)
        assert out["input_ids"] == expected["input_ids"], style
        assert out["attention_mask"] == expected["attention_mask"], style
    marked = encode_relations(rows.head(1), e5, 512, "marker")["input_ids"][0]
    assert e5.convert_ids_to_tokens(marked).count("[E1]") == 1  # one token each: added as special tokens


def round_trips(tokenizer, word: str) -> bool:
    return squash(tokenizer.decode(tokenizer(word, add_special_tokens=False)["input_ids"])) == squash(word)


def marked_words(row, style: str) -> tuple[str, str]:
    """Subject and object with their markers, as inserted."""
    (so, sc), (oo, oc) = markers(style, row.subj_type, row.obj_type)
    return f"{so}{row.subj_word}{sc}", f"{oo}{row.obj_word}{oc}"


def core_text(row, style: str) -> str:
    """The (marked) text from the first entity's start to the last entity's end, markers included:
    nothing is inserted before the first entity or after the last one, so the offsets find it."""
    marked = mark_entities(row.sentence, (row.subj_start, row.subj_end, row.subj_type),
                           (row.obj_start, row.obj_end, row.obj_type), style)
    tail = len(row.sentence) - max(row.subj_end, row.obj_end) - 1
    return marked[min(row.subj_start, row.obj_start):len(marked) - tail]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("max_length", [64, 28])
def test_windowing_keeps_both_entities_on_long_dev_rows(e5, dev, style, max_length):
    rows = dev[dev["sentence"].str.len() > 200].reset_index(drop=True)
    assert len(rows) == 182
    firsts, texts = entity_texts(rows, style, e5.sep_token)
    full = (e5(firsts, texts) if firsts else e5(texts))["input_ids"]
    assert min(len(ids) for ids in full) > max_length  # every row here needs windowing
    out = encode_relations(rows, e5, max_length, style)
    lengths = [len(ids) for ids in out["input_ids"]]
    assert max(lengths) <= max_length and min(lengths) >= max_length - 4  # as much context as fits
    assert out["attention_mask"] == [[1] * n for n in lengths]

    def size(text: str) -> int:
        return len(e5(text, add_special_tokens=False)["input_ids"])

    fixed = e5.num_special_tokens_to_add(pair=style == "baseline")
    counts = dict(checked=0, whole=0, elided=0, squeezed=0, context=0)
    for row, ids in zip(rows.itertuples(), out["input_ids"]):
        decoded = e5.decode(ids)
        if style == "marker":
            assert [decoded.count(m) for m in MARKER_TOKENS] == [1, 1, 1, 1], decoded
        if not (round_trips(e5, row.subj_word) and round_trips(e5, row.obj_word)):
            continue  # a character outside the pruned vocabulary decodes as <unk>
        counts["checked"] += 1
        subj, obj = marked_words(row, style)
        core = core_text(row, style)
        if style == "baseline":
            head, body = decoded.split("</s></s>", 1)
            fixed_here = fixed + size(f"{row.subj_word}</s>{row.obj_word}")
            if fixed_here < max_length // 2:  # the first text is never cut when it leaves room
                assert squash(head) == f"<s>{squash(row.subj_word)}</s>{squash(row.obj_word)}", decoded
        else:
            body, fixed_here = decoded, fixed
        body = squash(body)
        if size(core) + fixed_here + 4 <= max_length:  # the span from entity to entity fits: kept whole
            assert squash(core) in body, (row.id, decoded)
            counts["whole"] += 1
        elif size(core) + fixed_here > max_length + 2:  # it cannot fit: the text between is cut
            assert squash(core) not in body, (row.id, decoded)
            if size(subj) + size(obj) + 2 + fixed_here + 2 <= max_length:
                assert squash(subj) in body and squash(obj) in body and squash(ELISION) in body, (row.id, decoded)
                counts["elided"] += 1
            elif style == "baseline":  # the entities are whole in the first text: the sentence is context
                counts["context"] += 1
            elif size(subj) + size(obj) + 2 + fixed_here > max_length:  # only the marked entities, cut
                pairs = list(markers(style, row.subj_type, row.obj_type))
                if (row.obj_start, -row.obj_end) < (row.subj_start, -row.subj_end):
                    pairs.reverse()  # position order
                pattern = r"\.\.\.".join(f"{re.escape(squash(o))}.+{re.escape(squash(c))}" for o, c in pairs)
                assert re.fullmatch(f"<s>{pattern}</s>", body), (row.id, decoded)
                counts["squeezed"] += 1
    assert counts["checked"] >= 170 and counts["whole"] >= 20, counts
    if max_length == 28:
        assert counts["elided"] >= 20, counts
        assert counts["squeezed"] >= (1 if style == "typed" else 0) and counts["context"] >= (style == "baseline"), counts


LONG = "가나다라마바사 " * 30


def test_nested_entities_in_a_long_sentence_keep_their_markers(e5):
    sentence = LONG + "서울대학교병원에서 " + LONG
    start = len(LONG)
    frame = frame_of((sentence, (start, start + 6, "ORG"), (start, start + 4, "ORG")),
                     (sentence, (start, start + 3, "ORG"), (start + 2, start + 5, "LOC")))
    for max_length in (40, 16):
        out = encode_relations(frame, e5, max_length, "marker")
        nested, crossing = (squash(e5.decode(ids)) for ids in out["input_ids"])
        assert max(len(ids) for ids in out["input_ids"]) <= max_length
        assert "[E1][E2]서울대학교[/E2]병원[/E1]에서" in nested
        assert "[E1]서울[E2]대학[/E1]교병[/E2]원에서" in crossing
        out = encode_relations(frame, e5, max_length + 8, "typed")  # typed markers take more tokens
        assert max(len(ids) for ids in out["input_ids"]) <= max_length + 8
        assert "@*ORG*#^ORG^서울대학교#병원@" in squash(e5.decode(out["input_ids"][0]))
        assert "@*ORG*서울#^LOC^대학@교병#" in squash(e5.decode(out["input_ids"][1]))


def test_wordpiece_windowing_keeps_markers_and_token_types(wordpiece, dev):
    rows = dev[dev["sentence"].str.len() > 200].head(40)
    for style in STYLES:
        out = encode_relations(rows, wordpiece, 24, style)
        assert [len(t) for t in out["token_type_ids"]] == [len(ids) for ids in out["input_ids"]]
        assert max(len(ids) for ids in out["input_ids"]) <= 24
        for ids, types in zip(out["input_ids"], out["token_type_ids"]):
            tokens = wordpiece.convert_ids_to_tokens(ids)
            if style == "marker":
                assert [tokens.count(m) for m in MARKER_TOKENS] == [1, 1, 1, 1], tokens
            if style == "baseline":
                assert tokens.count("[SEP]") == 3 and types[-1] == 1 and types[0] == 0
            else:
                assert tokens.count("[SEP]") == 1 and set(types) == {0}


def test_entity_words_too_long_for_max_length_are_cut_but_keep_their_markers(e5):
    word = "대한민국임시정부수립기념사업회" * 6  # 90 characters, far more than 20 tokens
    sentence = f"그는 {word}의 회장인 김철수를 만났다."
    start = 3
    frame = frame_of((sentence, (start, start + len(word) - 1, "ORG"), (sentence.index("김철수"),
                                                                        sentence.index("김철수") + 2, "PER")))
    out = encode_relations(frame, e5, 20, "marker")
    ids = out["input_ids"][0]
    assert len(ids) <= 20
    body = squash(e5.decode(ids))
    match = re.fullmatch(r"<s>\[E1\](.+)\[/E1\]\.\.\.\[E2\](.+)\[/E2\]</s>", body)
    assert match, body
    cut_subject, cut_object = match.groups()
    assert word.startswith(cut_subject) and 0 < len(cut_subject) < len(word)
    assert cut_object == "김철수"  # cut to the same number of characters: a short word stays whole
    longer = encode_relations(frame, e5, 24, "marker")["input_ids"][0]
    assert len(re.fullmatch(r"<s>\[E1\](.+)\[/E1\].*", squash(e5.decode(longer))).group(1)) > len(cut_subject)
    out = encode_relations(frame, e5, 24, "typed")
    assert re.fullmatch(r"<s>@\*ORG\*대한민국.+@\.\.\.#\^PER\^김철수#</s>", squash(e5.decode(out["input_ids"][0])))
    out = encode_relations(frame, e5, 24, "baseline")
    assert re.fullmatch(r"<s>대한민국.+</s>김철수</s></s>대한민국.+\.\.\.김철수</s>", squash(e5.decode(out["input_ids"][0])))


def test_max_length_too_small_for_the_markers(e5):
    frame = frame_of((SENTENCE, SUBJ, OBJ))
    with pytest.raises(KluekitError) as info:
        encode_relations(frame, e5, 8, "typed")
    assert str(info.value) == ("max_length 8 is too small for the row with id 'r0': its entities and their markers "
                               "do not fit even cut to one character each")


def test_marker_style_needs_the_marker_tokens():
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(str(shared_path("models", "e5-small-ko")))
    with pytest.raises(KluekitError) as info:
        encode_relations(frame_of((SENTENCE, SUBJ, OBJ)), plain, 64, "marker")
    assert str(info.value) == ("the marker entity style needs [E1], [/E1], [E2], [/E2] as special tokens of the "
                               "tokenizer ([E1], [/E1], [E2], [/E2] is not one token): add MARKER_TOKENS first")
    assert len(encode_relations(frame_of((SENTENCE, SUBJ, OBJ)), plain, 64, "typed")["input_ids"][0]) > 20


@pytest.mark.parametrize("max_length, style, message", [
    (0, "marker", "max_length must be a positive integer, not 0"),
    (12.5, "marker", "max_length must be a positive integer, not 12.5"),
    (64, "Typed", "unknown entity style 'Typed' (choose from baseline, marker, typed)"),
])
def test_bad_arguments(e5, max_length, style, message):
    with pytest.raises(KluekitError) as info:
        encode_relations(frame_of((SENTENCE, SUBJ, OBJ)), e5, max_length, style)
    assert str(info.value) == message


def test_missing_columns_and_slow_tokenizers(e5):
    with pytest.raises(KluekitError) as info:
        encode_relations(frame_of((SENTENCE, SUBJ, OBJ)).drop(columns=["obj_type", "sentence"]), e5, 64, "typed")
    assert str(info.value) == "relation inputs need the columns of read_re; missing: sentence, obj_type"

    class Slow:
        is_fast = False

    with pytest.raises(KluekitError) as info:
        encode_relations(frame_of((SENTENCE, SUBJ, OBJ)), Slow(), 64, "typed")
    assert str(info.value) == "encode_relations needs a fast (Rust) tokenizer: it windows long rows by offsets"


def test_context_is_split_evenly_and_one_side_takes_what_the_other_cannot_use(e5):
    middle = LONG + "조지 해리슨과 비틀즈는 " + LONG
    at_start = "조지 해리슨과 비틀즈는 " + LONG
    start = len(LONG)
    frame = frame_of((middle, (start, start + 5, "PER"), (start + 8, start + 10, "ORG")),
                     (at_start, (0, 5, "PER"), (8, 10, "ORG")))
    out = encode_relations(frame, e5, 40, "marker")
    assert [len(ids) for ids in out["input_ids"]] == [40, 40]
    tokens = e5.convert_ids_to_tokens(out["input_ids"][0])
    before, after = tokens.index("[E1]") - 1, len(tokens) - 2 - tokens.index("[/E2]")  # without <s>, </s>
    assert before >= 8 and abs(before - after) <= 2, tokens
    tokens = e5.convert_ids_to_tokens(out["input_ids"][1])
    assert tokens[1] == "[E1]" and len(tokens) - 2 - tokens.index("[/E2]") >= 20, tokens


def piece(tokenizer, token_id: int) -> str:
    return tokenizer.convert_ids_to_tokens(int(token_id)).lstrip("▁").removeprefix("##")


TYPED, MARKER = ("typed", (("@", "*"), ("#", "^"))), ("marker", (("[E1]",), ("[E2]",)))


@pytest.mark.parametrize("tokenizer_name, style, opening", [("e5", *TYPED), ("e5", *MARKER), ("wordpiece", *MARKER)])
@pytest.mark.parametrize("max_length", [256, 28])  # 28: most of these long rows are windowed or squeezed
def test_entity_positions_point_at_the_opening_markers(request, dev, style, opening, max_length, tokenizer_name):
    tokenizer = request.getfixturevalue(tokenizer_name)
    rows = pd.concat([dev.head(300), dev[dev["sentence"].str.len() > 200]]).reset_index(drop=True)
    ids = encode_relations(rows, tokenizer, max_length, style)["input_ids"]
    positions = entity_positions(ids, tokenizer, style)
    assert len(positions) == len(rows)
    subject_first = ((rows["subj_start"] < rows["obj_start"]) |
                     ((rows["subj_start"] == rows["obj_start"]) & (rows["subj_end"] >= rows["obj_end"]))).to_numpy()
    for row_ids, (s, o), first in zip(ids, positions, subject_first):
        for position, pieces in ((s, opening[0]), (o, opening[1])):
            assert [piece(tokenizer, t) for t in row_ids[position:position + len(pieces)]] == list(pieces)
        assert (s < o) == first  # each points at its own entity's marker, in sentence order


def test_entity_positions_in_a_subject_after_object_sentence(e5):
    frame = frame_of((SENTENCE, SUBJ, OBJ))
    ids = encode_relations(frame, e5, 128, "typed")["input_ids"]
    [[s, o]] = entity_positions(ids, e5, "typed")
    tokens = e5.convert_ids_to_tokens(ids[0])
    assert o < s and tokens[s].endswith("@") and tokens[o].endswith("#")
    assert "ORG" in "".join(tokens[s:s + 5]) and "PER" in "".join(tokens[o:o + 5])


def test_entity_positions_need_markers_the_tokenizer_knows(e5, wordpiece):
    with pytest.raises(KluekitError, match="'marker' or 'typed'"):
        entity_positions([[0, 5, 2]], e5, "baseline")
    assert wordpiece.convert_tokens_to_ids("@") == wordpiece.unk_token_id  # never seen in its training text
    with pytest.raises(KluekitError, match="no piece for '@'"):
        entity_positions([[0, 5, 2]], wordpiece, "typed")
