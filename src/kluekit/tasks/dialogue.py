"""A dialogue model: a causal language model fine-tuned on question/answer pairs, the loss on the answers only.

    kluekit train dialogue --model runs/gpt2-small --train ChatbotData.csv --dev-split 0.1 --output-dir runs/chat
    kluekit chat --model runs/chat

Each pair is ``<s> question <sep> answer </s>`` (bos where the tokenizer has one; ``--separator`` is added to
the tokenizer as a special token when it is not one already); only the answer's tokens and the final end
token are predicted, so the model learns to answer, not to ask. The run's tokenizer carries the format as its
chat template, so ``kluekit chat`` (and ``tokenizer.apply_chat_template``) build the same prompt. ``--dev-split``
holds out whole answers (many questions share one answer): the dev perplexity is on answers never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..config import opt
from ..errors import KluekitError
from .base import TaskOptions
from .clm import CLMTask

TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ message['content'] }}"
            "SEP{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


@dataclass
class DialogueOptions(TaskOptions):
    question_column: str = opt("Q", "column of the questions (user turns)")
    answer_column: str = opt("A", "column of the answers the model learns to give")
    separator: str = opt("<sep>", "token between question and answer (added to the tokenizer if it is not a "
                                  "special token of it)")


class DialogueTask(CLMTask):
    """Dialogue fine-tuning of a causal LM on question/answer pairs: answer perplexity (lower is better)."""

    name = "dialogue"
    Options = DialogueOptions
    verbs = ("train", "evaluate")
    presets = {}

    def __init__(self, options=None, labels=None):
        super().__init__(options, labels)
        if not self.options.separator.strip():
            raise KluekitError("--separator: give a token, e.g. <sep>")

    # ---- data -------------------------------------------------------------------------------------------
    def read(self, path, fmt="auto", require_labels=True):
        from ..data.qa import read_qa_table

        return read_qa_table(path, self.options.question_column, self.options.answer_column, fmt, require_labels)

    def texts(self, examples):
        return examples["question"].tolist() + examples.get("answer", pd.Series(dtype=str)).tolist()

    def groups(self, examples):
        """Pairs that share an answer stay on one side of a split."""
        return examples["answer"].to_numpy() if "answer" in examples else None

    def encode(self, examples, tokenizer, max_length):
        """``bos question sep answer eos``, labels on ``answer eos`` only; long questions are cut from the
        left (their end is nearest the answer), then long answers from the right."""
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        sep = tokenizer.convert_tokens_to_ids(self.options.separator)
        questions = tokenizer(examples["question"].tolist(), add_special_tokens=False)["input_ids"]
        answers = tokenizer(examples["answer"].tolist(), add_special_tokens=False)["input_ids"]
        head = [bos] if bos is not None else []
        ids, labels = [], []
        for question, answer in zip(questions, answers):
            answer = answer[: max(1, max_length - len(head) - 3)] + [eos]
            question = question[-max(1, max_length - len(head) - 1 - len(answer)):]
            prompt = head + question + [sep]
            ids.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids], "labels": labels}

    # ---- model ------------------------------------------------------------------------------------------
    def build_model(self, name):
        """The causal LM of ``--model`` with the separator token and the chat template."""
        from ..modeling import load_pretrained

        tokenizer, model = load_pretrained(name, self.model_class(), {})
        self.check_tokenizer(tokenizer, name)
        sep = self.options.separator
        if sep not in tokenizer.all_special_tokens:
            tokenizer.add_special_tokens({"additional_special_tokens": [sep]})
            if len(tokenizer) > model.get_input_embeddings().num_embeddings:
                model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.chat_template = TEMPLATE.replace("SEP", sep)
        return tokenizer, model
