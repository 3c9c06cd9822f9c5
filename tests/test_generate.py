"""``kluekit generate`` / ``kluekit chat`` on a tiny random GPT-2 (BPE on KLUE-STS text, 128 positions), and
the few-shot rank classification of ``fewshot.py``."""

from __future__ import annotations

import io
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from kluekit import cli
from kluekit.errors import KluekitError
from kluekit.fewshot import draw_shots, few_shot_prompts, label_words, pick_text_column, score_choices
from kluekit.causal import load_causal_lm, pad_rows, prompt_ids
from kluekit.chat import chat_ids
from kluekit.generation import GenerateOptions, cut_at_stop, generate, generate_texts, generation_config

PROMPTS = ["오늘", "숙소 위치는 찾기 쉽고", "그리고 무엇보다 주방이 넓고 깨끗해서 요리하기 좋았습니다"]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}<sep>"
                 "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


@pytest.fixture(scope="module")
def sts_frame(sts_train_csv) -> pd.DataFrame:
    return pd.read_csv(sts_train_csv).head(1000)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, sts_frame):
    """A random 2-layer GPT-2 with a BPE tokenizer trained on 2000 KLUE-STS sentences (and the Latin letters,
    which transformers' stop-string matching probes the vocabulary with)."""
    from tiny_model import build_tiny_gpt2

    texts = sts_frame["sentence1"].tolist() + sts_frame["sentence2"].tolist() + ["abcdefghijklmnopqrstuvwxyz"] * 20
    return build_tiny_gpt2(texts, tmp_path_factory.mktemp("gen") / "gpt2")


@pytest.fixture(scope="module")
def lm(gpt2):
    """(tokenizer, model) as the commands load them."""
    return load_causal_lm(str(gpt2))


@pytest.fixture(scope="module")
def chat_model(gpt2, tmp_path_factory):
    """The tiny GPT-2 saved as 'kluekit train dialogue' saves a model: a <sep> token and a chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("gen") / "chat"
    tokenizer = AutoTokenizer.from_pretrained(gpt2)
    model = AutoModelForCausalLM.from_pretrained(gpt2)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<sep>"]})
    model.resize_token_embeddings(len(tokenizer))
    tokenizer.chat_template = CHAT_TEMPLATE
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def options(model, **values) -> GenerateOptions:
    return GenerateOptions(model=str(model), **values)


def one_line_error(capsys, needles) -> str:
    """The one error line of a failed command (beside the libraries' progress bars), holding every needle."""
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "kluekit:" in line or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith("kluekit: error: "), err
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


def test_help_of_both_commands(capsys):
    for command, needle in [("generate", "--few-shot"), ("chat", "chat template")]:
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0
        assert needle in capsys.readouterr().out


def test_every_decoding_option_reaches_generation_config(lm):
    tokenizer, _ = lm
    cfg = options("m", max_new_tokens=7, min_new_tokens=2, num_beams=3, do_sample=True, top_k=5, top_p=0.8,
                  temperature=0.7, repetition_penalty=1.3, no_repeat_ngram_size=2, stop=["끝", "."])
    config = generation_config(cfg, tokenizer)
    assert (config.max_new_tokens, config.min_new_tokens, config.num_beams, config.do_sample, config.top_k, config.top_p,
            config.temperature, config.repetition_penalty, config.no_repeat_ngram_size) == (7, 2, 3, True, 5, 0.8, 0.7,
                                                                                            1.3, 2)
    assert config.stop_strings == ["끝", "."]
    assert (config.eos_token_id, config.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    config.validate(strict=True)
    greedy = generation_config(options("m", top_k=5, top_p=0.8, temperature=0.7), tokenizer)
    assert not greedy.do_sample and greedy.stop_strings is None
    assert (greedy.top_k, greedy.top_p, greedy.temperature) == (None, None, None)  # not passed: no warning
    greedy.validate(strict=True)  # strict: raises on what transformers would warn about


def test_prompt_framing_has_bos_and_no_eos(lm):
    tokenizer, _ = lm
    ids = prompt_ids(tokenizer, ["오늘 날씨"])[0]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id not in ids
    assert ids[1:] == tokenizer("오늘 날씨", add_special_tokens=False)["input_ids"]


def test_greedy_is_deterministic_and_batching_left_pads(gpt2, lm, capsys):
    first = generate(options(gpt2, prompt=PROMPTS, max_new_tokens=12))
    second = generate(options(gpt2, prompt=PROMPTS, max_new_tokens=12))
    texts = [row["generated"] for row in first]
    assert texts == [row["generated"] for row in second]
    assert any(texts) and [row["prompt"] for row in first] == PROMPTS
    assert texts[1] in capsys.readouterr().out
    tokenizer, model = lm
    ids = prompt_ids(tokenizer, PROMPTS)
    assert len({len(row) for row in ids}) == 3  # different lengths: the batch is padded
    one_by_one = [generate_texts(model, tokenizer, [row], options(gpt2, max_new_tokens=12))[0] for row in ids]
    assert one_by_one == texts


def test_seed_fixes_sampling(gpt2, lm):
    tokenizer, model = lm
    ids = prompt_ids(tokenizer, PROMPTS[:2])

    def sample(seed):
        return generate_texts(model, tokenizer, ids, options(gpt2, do_sample=True, temperature=1.5, top_k=0,
                                                             max_new_tokens=24, seed=seed))

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


@pytest.mark.parametrize("readable", [True, False])
def test_stop_string_cuts_the_text(gpt2, lm, monkeypatch, readable):
    import transformers

    from kluekit.generation import stop_strings_readable

    tokenizer, model = lm
    assert stop_strings_readable(tokenizer, ["가"])
    if not readable:  # a vocabulary transformers' StopStringCriteria cannot read: kluekit's own criterion
        def unreadable(*args, **kwargs):
            raise ValueError("substring not found")

        monkeypatch.setattr(transformers, "StopStringCriteria", unreadable)
        assert not stop_strings_readable(tokenizer, ["가"])
    ids = prompt_ids(tokenizer, PROMPTS[1:2])
    full = generate_texts(model, tokenizer, ids, options(gpt2, max_new_tokens=24))[0]
    middle = len(full) // 2
    stop = next(full[i:i + 2] for i in range(middle, len(full) - 1) if " " not in full[i:i + 2])
    expected = full[:full.index(stop)].strip()
    assert len(expected) < len(full)
    assert generate_texts(model, tokenizer, ids, options(gpt2, max_new_tokens=24, stop=[stop]))[0] == expected
    assert cut_at_stop(" 가나 다라\n마바 ", ["\n", "다"]) == "가나"
    assert cut_at_stop("가나", ["없음"]) == "가나"


def test_text_stop_stops_the_rows_holding_a_stop_string(lm):
    from kluekit.generation import text_stop

    tokenizer, _ = lm
    rows = prompt_ids(tokenizer, ["오늘 날씨 좋다", "오늘 숙소 좋다", "날씨"])
    ids, _ = pad_rows(rows, tokenizer.pad_token_id, left=True)
    done = text_stop(tokenizer, ["날씨"], start=ids.shape[1] - 3)(ids, None)  # new text: " 좋다", " 좋다", " 날씨"
    full = text_stop(tokenizer, ["날씨"], start=0)(ids, None)
    assert full.tolist() == [True, False, True] and done.tolist() == [False, False, True]


def test_prompt_too_long_for_the_positions_is_one_line(gpt2, sts_frame, tmp_path, capsys):
    long = " ".join(sts_frame["sentence1"].head(8))
    out = tmp_path / "out.csv"
    assert cli.main(["generate", "--model", str(gpt2), "--prompt", "짧은 문장", long, "--max-new-tokens", "64",
                     "--output", str(out)]) == 2
    err = one_line_error(capsys, ["prompt 2", "128 positions", "+ 64 new tokens"])
    assert f"{len(prompt_ids(load_causal_lm(str(gpt2))[0], [long])[0])} tokens" in err
    assert not out.exists()


def test_empty_prompt_file_and_empty_prompt_are_one_line(gpt2, tmp_path, capsys):
    empty = tmp_path / "prompts.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert cli.main(["generate", "--model", str(gpt2), "--input", str(empty), "--output", str(out)]) == 2
    one_line_error(capsys, [str(empty), "empty"])
    assert cli.main(["generate", "--model", str(gpt2), "--prompt", "오늘", " ", "--output", str(out)]) == 2
    one_line_error(capsys, ["--prompt 2: empty prompt"])
    assert not out.exists()


def test_bad_decoding_values_are_one_line(gpt2, capsys):
    for flag, value, needle in [("--top-p", "0", "(0, 1]"), ("--top-p", "1.5", "(0, 1]"),
                                ("--temperature", "0", "> 0")]:
        assert cli.main(["generate", "--model", str(gpt2), "--prompt", "오늘", flag, value]) == 2
        one_line_error(capsys, [flag, needle])


def test_tokenizer_without_eos_is_one_line(gpt2, tmp_path, capsys):
    from transformers import AutoTokenizer

    model = tmp_path / "no-eos"
    shutil.copytree(gpt2, model)
    tokenizer = AutoTokenizer.from_pretrained(gpt2)
    tokenizer.eos_token = None
    tokenizer.save_pretrained(model)
    out = tmp_path / "out.csv"
    assert cli.main(["generate", "--model", str(model), "--prompt", "오늘", "--output", str(out)]) == 2
    one_line_error(capsys, ["no eos token"])
    assert not out.exists()


def test_not_a_causal_lm_is_one_line(tmp_path, capsys):
    (tmp_path / "empty-model").mkdir()
    assert cli.main(["generate", "--model", str(tmp_path / "empty-model"), "--prompt", "오늘"]) == 2
    one_line_error(capsys, ["cannot load", "causal language model"])


def test_few_shot_draws_are_spread_over_labels_and_fixed_by_the_seed():
    labels = ["0"] * 10 + ["1"] * 10 + ["2"] * 2
    shots = draw_shots(labels, 9, seed=7)
    assert sorted(np.asarray(labels)[shots].tolist()) == ["0"] * 4 + ["1"] * 3 + ["2"] * 2
    assert len(set(shots)) == 9
    assert draw_shots(labels, 9, seed=7) == shots
    assert draw_shots(labels, 9, seed=8) != shots
    assert sorted(np.asarray(labels)[draw_shots(labels, 4, seed=0)].tolist()) == ["0", "0", "1", "2"]
    assert draw_shots(labels, 0, seed=0) == []
    with pytest.raises(KluekitError, match="only 22 examples"):
        draw_shots(labels, 23, seed=0)


def test_few_shot_prompt_and_label_words():
    words = label_words(["0=부정", "1=긍정"], ["0", "1", "1"])
    assert words == {"0": "부정", "1": "긍정"}
    assert label_words([], ["0", "1"]) == {"0": "0", "1": "1"}
    with pytest.raises(KluekitError, match="no word for label"):
        label_words(["0=부정"], ["0", "1"])
    with pytest.raises(KluekitError, match="VALUE=WORD"):
        label_words(["부정"], ["0"])
    prompts, gap = few_shot_prompts("문장: {text}\n감정: {label}\n\n", [("좋다", "긍정"), ("별로", "부정")],
                                    ["재밌다", "지루하다"])
    assert prompts[0] == "문장: 좋다\n감정: 긍정\n\n문장: 별로\n감정: 부정\n\n문장: 재밌다\n감정:"
    assert prompts[1].endswith("문장: 지루하다\n감정:") and gap == " "
    assert few_shot_prompts("{text} => {label} 입니다.\n", [], ["좋다"]) == (["좋다 =>"], " ")
    with pytest.raises(KluekitError, match="--template"):
        few_shot_prompts("문장: {text}", [], ["좋다"])


def test_text_column_of_an_nsmc_file(tmp_path):
    from kluekit.data.tables import read_table
    from kluekit.errors import DataError

    nsmc = tmp_path / "ratings.txt"
    nsmc.write_text("id\tdocument\tlabel\n1\t재밌다\t1\n2\t별로\t0\n", encoding="utf-8")
    assert pick_text_column(read_table(nsmc), "text", "label", nsmc) == "document"
    two = tmp_path / "two.csv"
    two.write_text("title,body,label\n가,나,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="found: title, body, label"):
        pick_text_column(read_table(two), "text", "label", two)


def test_score_choices_is_the_log_prob_sum(lm):
    tokenizer, model = lm
    prompts, gap = few_shot_prompts("문장: {text}\n감정: {label}\n\n", [("좋다", "긍정")], ["재밌다", "숙소가 아주 깨끗"])
    choices = [gap + word for word in ["긍정", "부정", "잘 모르겠다"]]
    scores = score_choices(model, tokenizer, prompts, choices, batch_size=4)  # batches of mixed lengths
    assert scores.shape == (2, 3)
    for i, prompt in enumerate(prompts):
        for j, choice in enumerate(choices):
            context = len(prompt_ids(tokenizer, [prompt])[0])
            ids = torch.tensor(prompt_ids(tokenizer, [prompt + choice]))
            with torch.no_grad():
                logprobs = model(input_ids=ids).logits.log_softmax(-1)[0]
            direct = logprobs[torch.arange(context - 1, ids.shape[1] - 1), ids[0, context:]].sum()
            assert ids.shape[1] > context and scores[i, j] == pytest.approx(float(direct), abs=1e-4)


def test_few_shot_cli_writes_predictions_and_accuracy(gpt2, sts_frame, tmp_path):
    frame = sts_frame[sts_frame["sentence1"].str.len() < 24].head(60)
    nsmc = pd.DataFrame({"id": range(len(frame)), "document": frame["sentence1"].to_numpy(),
                         "label": (frame["label"] >= 3).astype(int).to_numpy()})
    nsmc.head(40).to_csv(tmp_path / "train.txt", sep="\t", index=False)
    nsmc.tail(20).to_csv(tmp_path / "test.txt", sep="\t", index=False)
    out = tmp_path / "pred.csv"
    args = ["generate", "--model", str(gpt2), "--few-shot", str(tmp_path / "train.txt"), "--input",
            str(tmp_path / "test.txt"), "--shots", "2", "--label-words", "0=부정", "1=긍정", "--batch-size", "8"]
    result = cli.run([*args, "--output", str(out)])
    typed = cli.run([*args, "--template", r"문장: {text}\n감정: {label}\n\n"])  # \n as typed in a shell
    assert typed["rows"] == result["rows"]
    written = pd.read_csv(out)
    assert list(written.columns) == ["prompt_id", "text", "prediction", "score_부정", "score_긍정"]
    assert written["text"].tolist() == nsmc.tail(20)["document"].tolist()
    best = np.where(written["score_긍정"] > written["score_부정"], "긍정", "부정")
    assert (written["prediction"] == best).all()
    gold = np.where(nsmc.tail(20)["label"] == 1, "긍정", "부정")
    assert result["accuracy"] == pytest.approx(100 * np.mean(best == gold))


def test_choices_rank_plain_prompts(gpt2):
    result = generate(options(gpt2, prompt=["이 숙소는", "위치가"], choices=["좋다", "나쁘다"]))
    assert [row["prediction"] in ("좋다", "나쁘다") for row in result["rows"]] == [True, True]
    assert "accuracy" not in result


def test_chat_prompt_matches_dialogue_training(chat_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    question = "오늘 날씨 어때"
    expected = ([tokenizer.bos_token_id] + tokenizer(question, add_special_tokens=False)["input_ids"]
                + [tokenizer.convert_tokens_to_ids("<sep>")])
    assert chat_ids(tokenizer, [question]) == [expected]


def test_chat_from_a_file_writes_question_answer(chat_model, tmp_path):
    questions = tmp_path / "questions.csv"
    pd.DataFrame({"Q": ["12시 땡!", "1지망 학교 떨어졌어"], "A": ["하루가 또 가네요.", "위로해 드립니다."]}).to_csv(
        questions, index=False)
    out = tmp_path / "answers.csv"
    assert cli.main(["chat", "--model", str(chat_model), "--input", str(questions), "--output", str(out),
                     "--max-new-tokens", "8"]) == 0
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == ["question", "answer"]
    assert written["question"].tolist() == ["12시 땡!", "1지망 학교 떨어졌어"]
    assert (written["answer"].str.strip() != "").all()  # --min-new-tokens 1 by default: never an empty answer


def test_chat_reads_stdin_until_quit(chat_model, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("안녕\n\n  \n잘 가\nquit\n무시되는 질문\n"))
    rows = cli.run(["chat", "--model", str(chat_model), "--max-new-tokens", "4"])
    assert [row["question"] for row in rows] == ["안녕", "잘 가"]
    assert "> " not in capsys.readouterr().out  # not a terminal: no prompt


def test_chat_without_a_chat_template_is_one_line(gpt2, tmp_path, capsys):
    questions = tmp_path / "q.txt"
    questions.write_text("안녕\n", encoding="utf-8")
    out = tmp_path / "answers.csv"
    assert cli.main(["chat", "--model", str(gpt2), "--input", str(questions), "--output", str(out)]) == 2
    one_line_error(capsys, ["not a dialogue model", "kluekit train dialogue"])
    assert not out.exists()
