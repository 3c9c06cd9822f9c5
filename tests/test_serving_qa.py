"""``kluekit serve --model BIENCODER --qa-set faq.csv``: POST /answer answers from the stored QA set as ``kluekit
answer`` does, says when nothing passes, validates its input and needs a bi-encoder."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from kluekit.errors import KluekitError
from kluekit.serving import ServeSettings
from kluekit.serving.app import create_app

QUESTIONS = ["오늘 너무 배고파", "비가 많이 오네", "영화 보러 갈래?"]
ANSWERS = ["뭐 좀 드세요.", "우산 챙기세요.", "좋아요."]


@pytest.fixture(scope="module")
def qa_set(tmp_path_factory):
    path = tmp_path_factory.mktemp("qa") / "faq.csv"
    pd.DataFrame({"Q": QUESTIONS, "A": ANSWERS}).to_csv(path, index=False)
    return path


def test_answer_route(qa_set, tiny_biencoder):
    settings = ServeSettings(model=str(tiny_biencoder), qa_set=str(qa_set), qa_threshold=0.99, qa_top_n=2)
    with TestClient(create_app(settings)) as client:
        found = client.post("/answer", json={"question": "비가 많이 오네"})
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["answered"] and body["answer"] == "우산 챙기세요." and len(body["candidates"]) == 2
        missing = client.post("/answer", json={"question": "양자역학의 해석 문제"}).json()
        assert not missing["answered"] and missing["answer"] == "" and missing["candidates"]
        assert client.post("/answer", json={"question": "  "}).status_code == 422
        assert client.post("/similarity", json={"sentence1": "a", "sentence2": "b"}).status_code != 404  # still served
        assert 'model="qa-set"' in client.get("/metrics").text


def test_qa_set_needs_a_biencoder(qa_set, tmp_path, tiny_model, sts_train_csv):
    from kluekit import cli

    train = tmp_path / "train.csv"
    pd.read_csv(sts_train_csv).head(32).to_csv(train, index=False)
    run = tmp_path / "sts"
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--output-dir", str(run),
                     "--max-steps", "1", "--max-length", "32"]) == 0
    with pytest.raises(KluekitError, match="--qa-set: serve a bi-encoder"):
        create_app(ServeSettings(model=str(run), qa_set=str(qa_set)))
