"""Task models behind the API (``kluekit serve --model RUN ...``): each task's route answers what
``Predictor`` predicts for the same rows, limits show in OpenAPI and are enforced as 4xx, several models
are served at once under their names, concurrent requests go through the micro-batcher (token budget, chunks
between small requests, 504, 503, metrics, errors kept to their request), and the int8 quality gate refuses
to start past --max-metric-drop. Tiny runs trained for a few steps on slices of the shared data."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import shared_path
from kluekit import cli
from kluekit.errors import KluekitError
from kluekit.predictor import Predictor
from kluekit.serving import ServeSettings
from kluekit.serving.app import create_app
from kluekit.serving.batcher import estimate_tokens
from kluekit.serving.quality import check_quality, metric_drop
from kluekit.serving.tasks import plan_models

STEPS = ["--max-steps", "3", "--batch-size", "16", "--max-length", "64", "--learning-rate", "1e-3"]
LIMITS = dict(max_text_chars=300, max_context_chars=2000, max_items=4, batch_wait_ms=30)
RE_SENTENCE = "조지 해리슨이 쓰고 비틀즈가 1969년 앨범에 담은 노래다."
RE_ITEM = {"sentence": RE_SENTENCE, "subject": {"start": 0, "end": 6, "type": "PER"},
           "object": {"start": 11, "end": 14, "type": "ORG"}}


def train(task, model, train_file, out, *extra):
    assert cli.main(["train", task, "--model", str(model), "--train", str(train_file), "--output-dir", str(out),
                     *STEPS, *map(str, extra)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model, sts_train_csv):
    """One tiny run per task (a few optimizer steps each) and a labelled YNAT dev slice."""
    root = tmp_path_factory.mktemp("task-runs")
    pd.read_csv(sts_train_csv).head(48).to_csv(root / "sts.csv", index=False)
    lines = shared_path("data", "klue_ynat", "ynat_train.tsv").read_text(encoding="utf-8").splitlines()
    (root / "ynat.tsv").write_text("\n".join(lines[:49]) + "\n", encoding="utf-8")
    (root / "ynat_dev.tsv").write_text("\n".join([lines[0]] + lines[-40:]) + "\n", encoding="utf-8")
    pd.read_csv(shared_path("data", "klue_re", "train_partial_union.csv")).head(48).to_csv(root / "re.csv", index=False)
    blocks = shared_path("data", "klue_ner", "klue-ner-v1.1_train_first5000.tsv").read_text(encoding="utf-8")
    (root / "ner.tsv").write_text("\n\n".join(blocks.split("\n\n")[:48]) + "\n\n", encoding="utf-8")
    korquad = json.loads(shared_path("data", "korquad", "KorQuAD_v1.0_dev.json").read_text(encoding="utf-8"))
    (root / "mrc.json").write_text(json.dumps({"version": "1", "data": [
        {"title": a["title"], "paragraphs": a["paragraphs"][:2]} for a in korquad["data"][:3]]}, ensure_ascii=False),
        encoding="utf-8")
    return {"sts": train("sts", tiny_model, root / "sts.csv", root / "sts"),
            "topics": train("classify", tiny_model, root / "ynat.tsv", root / "topics", "--preset", "ynat"),
            "re": train("re", tiny_model, root / "re.csv", root / "re", "--entity-style", "marker"),
            "ner": train("ner", tiny_model, root / "ner.tsv", root / "ner"),
            "mrc": train("mrc", tiny_model, root / "mrc.json", root / "mrc", "--max-length", "128"),
            "dev": root / "ynat_dev.tsv"}


@pytest.fixture(scope="module")
def client(runs):
    models = [f"topics={runs['topics']}", str(runs["re"]), str(runs["ner"]), str(runs["mrc"]), str(runs["sts"])]
    with TestClient(create_app(ServeSettings(model=models, **LIMITS))) as client:
        yield client


def predicted(run, frame) -> np.ndarray:
    predictor = Predictor(run, progress=False)
    return predictor.predict(frame)


# -- routes, OpenAPI, health -----------------------------------------------------------------------------
def test_every_task_has_its_route_and_openapi_shows_the_limits(client):
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/classify", "/relation", "/entities", "/answer", "/similarity", "/health"} <= paths
    assert {"/models/topics/classify", "/models/re/relation", "/models/ner/entities", "/models/mrc/answer",
            "/models/sts/similarity"} <= paths
    components = schema["components"]["schemas"]
    text = components["ClassifyItem"]["properties"]["text"]
    assert text["maxLength"] == 300 and text["minLength"] == 1
    assert components["MRCItem"]["properties"]["context"]["maxLength"] == 2000
    assert components["ClassifyItemBatch"]["properties"]["items"]["maxItems"] == 4
    assert components["EntitySpan"]["properties"]["end"]["maximum"] == 300
    health = client.get("/health").json()
    by_name = {m["name"]: m for m in health["models"]}
    assert by_name["topics"]["task"] == "classify" and by_name["topics"]["routes"] == ["/classify",
                                                                                      "/models/topics/classify"]
    assert {m["task"] for m in health["models"]} == {"classify", "re", "ner", "mrc", "sts"}
    assert health["biencoder"] is None and health["limits"]["max_items"] == 4


def test_classify_answers_what_predict_gives(client, runs):
    texts = ["삼성전자 새 스마트폰 공개", "프로야구 개막전 매진"]
    one = client.post("/classify", json={"text": texts[0]})
    assert one.status_code == 200, one.text
    batch = client.post("/models/topics/classify", json={"items": [{"text": t} for t in texts]}).json()["results"]
    frame = pd.DataFrame({"id": ["0", "1"], "text": texts, "label": "", "_row": [1, 2]})
    frame.attrs["has_labels"] = False  # as the reader marks an unlabelled file
    probs = predicted(runs["topics"], frame)
    labels = json.loads((runs["topics"] / "kluekit.json").read_text())["labels"]
    assert list(batch[0]["probabilities"]) == labels
    for result, row in zip(batch, probs):
        assert result["probabilities"] == pytest.approx(dict(zip(labels, row)), abs=1e-5)
        assert result["label"] == labels[row.argmax()] and result["probability"] == pytest.approx(row.max(), abs=1e-5)
    assert one.json() == batch[0]


def test_relation_spans_are_end_exclusive_and_scored_like_predict(client, runs):
    result = client.post("/relation", json=RE_ITEM).json()
    frame = pd.DataFrame([{"id": "0", "sentence": RE_SENTENCE, "subj_word": "조지 해리슨", "subj_start": 0,
                           "subj_end": 5, "subj_type": "PER", "obj_word": "비틀즈", "obj_start": 11, "obj_end": 13,
                           "obj_type": "ORG", "label": "", "label_id": -1, "source": "", "_row": 1}])
    probs = predicted(runs["re"], frame)[0]
    assert len(result["probabilities"]) == 30 and sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert list(result["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-5)
    bad = client.post("/relation", json={**RE_ITEM, "object": {"start": 11, "end": 99, "type": "ORG"}})
    assert bad.status_code == 422 and "object: span 11-99 is not inside the sentence" in bad.json()["detail"]


def test_entities_and_answers_carry_character_offsets(client):
    sentence = "이순신은 조선 중기의 무신이다. 서울에서 태어났다."
    entities = client.post("/entities", json={"sentence": sentence}).json()["entities"]
    for entity in entities:
        assert sentence[entity["start"]:entity["end"]] == entity["text"] and entity["type"]
    context = "1839년 바그너는 괴테의 파우스트를 처음 읽고 교향곡을 쓰려는 뜻을 갖는다."
    answers = client.post("/answer", json={"items": [{"question": "바그너는 무엇을 읽었나?", "context": context}] * 2})
    assert answers.status_code == 200, answers.text
    first, second = answers.json()["results"]
    assert first == second and 0 <= first["score"] <= 1
    assert first["answer"] == (context[first["start"]:first["end"]] if first["start"] >= 0 else "")


def test_sts_cross_encoder_alone_answers_similarity_on_0_to_5(runs):
    pairs = [("오늘 날씨가 좋다", "날씨가 맑다"), ("배송이 빨라요", "영화가 지루했다")]
    expected = predicted(runs["sts"], pd.DataFrame({"id": ["0", "1"], "source": "", "sentence1": [a for a, _ in pairs],
                                                    "sentence2": [b for _, b in pairs], "label": np.nan}))
    with TestClient(create_app(ServeSettings(model=str(runs["sts"]), **LIMITS))) as client:
        body = {"items": [{"sentence1": a, "sentence2": b} for a, b in pairs]}
        scores = [r["score"] for r in client.post("/similarity", json=body).json()["results"]]
        assert scores == pytest.approx(expected.tolist(), abs=1e-5) and all(0 <= s <= 5 for s in scores)


def test_bi_encoder_keeps_similarity_and_the_cross_encoder_moves_under_its_name(tiny_biencoder, runs):
    settings = ServeSettings(model=[str(tiny_biencoder), f"cross={runs['sts']}"], **LIMITS)
    with TestClient(create_app(settings)) as client:
        bi = client.post("/similarity", json={"sentence1": "가", "sentence2": "가"}).json()
        assert bi["cosine"] == pytest.approx(1.0, abs=1e-4)
        cross = client.post("/models/cross/similarity", json={"sentence1": "가", "sentence2": "가"}).json()
        assert set(cross) == {"score"}
        health = client.get("/health").json()
        assert [m["task"] for m in health["models"]] == ["biencoder", "sts"]
        assert health["models"][1]["routes"] == ["/models/cross/similarity"]
        assert health["biencoder"]["model"] == str(tiny_biencoder)
        assert client.get("/search", params={"q": "가"}).status_code == 409  # the bi-encoder's routes, as before
        metrics = client.get("/metrics").text  # one batcher per model, each under its name
        assert 'kluekit_batcher_requests_total{model="cross"} 1.0' in metrics
        assert f'kluekit_batcher_requests_total{{model="{tiny_biencoder.name}"}} 1.0' in metrics


# -- errors and limits ------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, message", [
    ({"text": "   "}, 422, "text: the text is empty"),
    ({"text": "가\ud800"}, 422, "text: Input should be a valid string, unable to parse raw data as a unicode"),
    ({"text": "가" * 301}, 422, "text: String should have at most 300 characters"),
    ({}, 422, "text: Field required"),
    ({"items": []}, 422, "batch.items: List should have at least 1 item"),
    ({"items": [{"text": "가"}] * 5}, 422, "batch.items: List should have at most 4 items"),
    ({"items": [{"text": "가"}, {"text": ""}]}, 422, "batch.items[1].text: String should have at least 1 character"),
    ({"items": [{"text": "가"}], "text": "나"}, 422, "batch.text: Extra inputs are not permitted"),
    ([{"text": "가"}], 422, "body: Input should be a valid dictionary or object"),
])
def test_bad_requests_are_4xx_with_a_detail(client, body, status, message):
    answer = client.post("/classify", content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code == status and message in answer.json()["detail"], answer.text


def test_concurrent_requests_are_predicted_together(client):
    before = client.get("/health").json()
    texts = [f"경제 뉴스 {i}번" for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda t: client.post("/classify", json={"text": t}), texts))
    assert all(a.status_code == 200 for a in answers)
    stats = {m["name"]: m["batching"] for m in client.get("/health").json()["models"]}["topics"]
    old = {m["name"]: m["batching"] for m in before["models"]}["topics"]
    assert stats["items"] - old["items"] == 12 and stats["batches"] - old["batches"] < 12


def test_model_values_are_checked_in_one_line(runs, tiny_biencoder, tmp_path, capsys):
    with pytest.raises(KluekitError, match="two models are named 'sts'"):
        plan_models(ServeSettings(model=[str(runs["sts"]), f"sts={runs['re']}"]))
    with pytest.raises(KluekitError, match="are both bi-encoders"):
        plan_models(ServeSettings(model=[str(tiny_biencoder), f"other={tiny_biencoder}"]))
    assert cli.main(["serve", "--model", f"a={tmp_path / 'nowhere'}"]) == 2
    assert f"--model: no such directory '{tmp_path / 'nowhere'}'" in capsys.readouterr().err


# -- the micro-batcher on task routes ---------------------------------------------------------------------
class StubPredict:
    """Stands in for a classify run's ``predict``: records each call's texts, sleeps ``delay`` seconds, fails a
    call holding "boom", and puts all probability on label ``N % labels`` for a text starting with digits N."""

    def __init__(self, labels: list[str], delay: float = 0.0):
        self.labels, self.delay, self.calls = labels, delay, []

    def __call__(self, frame) -> np.ndarray:
        texts = frame["text"].tolist()
        self.calls.append(texts)
        time.sleep(self.delay)
        if any("boom" in t for t in texts):
            raise ValueError("cannot predict boom")
        return np.eye(len(self.labels))[[self.label_id(t) for t in texts]]

    def label_id(self, text: str) -> int:
        return int(text[:2]) % len(self.labels)


@contextmanager
def stubbed_client(runs, monkeypatch, delay: float = 0.0, raise_server_exceptions: bool = True, **options):
    """A client of the topics run whose predictions come from a :class:`StubPredict` (the model still loads);
    ``raise_server_exceptions=False``: a 500 is answered to the test instead of raised in it."""
    settings = ServeSettings(model=[f"topics={runs['topics']}"], **{**LIMITS, **options})
    plan = plan_models(settings)
    predictor = plan.tasks[0].predictor
    stub = StubPredict(predictor.task.labels, delay)
    monkeypatch.setattr(predictor, "predict", stub, raising=False)
    with TestClient(create_app(settings, plan), raise_server_exceptions=raise_server_exceptions) as client:
        yield client, stub, client.app.state.task_services["topics"]


def numbered(i: int, length: int) -> str:
    """A text starting with its number (the stub's label) and ``length`` characters long."""
    return f"{i:02d} 뉴스".ljust(length, "가")


def batching(client, name: str = "topics") -> dict:
    return {m["name"]: m.get("batching") for m in client.get("/health").json()["models"]}[name]


def test_task_requests_are_merged_within_the_token_budget(runs, monkeypatch):
    texts = [numbered(i, 12 + 9 * (i % 3)) for i in range(18)]
    with stubbed_client(runs, monkeypatch, delay=0.03, batch_max_tokens=60,
                        batch_wait_ms=50) as (client, stub, service):
        tokens = {t: estimate_tokens(t, service.tokens_per_char) for t in texts}
        assert sum(tokens.values()) > 3 * 60 and max(tokens.values()) <= 30  # several calls, two items fit in one
        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(lambda t: client.post("/classify", json={"text": t}), texts))
        stats = batching(client)
    for text, answer in zip(texts, answers):  # each request its own answer
        assert answer.status_code == 200 and answer.json()["label"] == stub.labels[stub.label_id(text)]
    assert sorted(t for call in stub.calls for t in call) == sorted(texts)
    assert all(sum(tokens[t] for t in call) <= 60 for call in stub.calls), stub.calls
    assert max(len(call) for call in stub.calls) > 1 and len(stub.calls) < len(texts)
    assert stats["requests"] == 18 and stats["items"] == 18 and stats["batches"] == len(stub.calls)
    assert stats["max_tokens"] == 60 and 0 < stats["largest_batch_tokens"] <= 60
    assert stats["queue_depth"] == 0 and stats["queued_items"] == 0 and stats["rejected"] == 0


def test_a_large_task_request_is_chunked_between_small_ones(runs, monkeypatch):
    big = [numbered(i, 10) for i in range(24)]
    with stubbed_client(runs, monkeypatch, delay=0.05, max_items=24, upload_chunk_texts=4,
                        batch_wait_ms=1) as (client, stub, service), ThreadPoolExecutor(1) as pool:
        large = pool.submit(client.post, "/classify", json={"items": [{"text": t} for t in big]})
        while not stub.calls:
            time.sleep(0.005)
        small = []
        for i in range(3):  # one at a time, as a client waiting for each answer
            small.append(client.post("/models/topics/classify", json={"text": numbered(90 + i, 5)}))
            assert not large.done()  # answered while the large request was still running
        results = large.result().json()["results"]
        stats = batching(client)
    assert [r["label"] for r in results] == [stub.labels[stub.label_id(t)] for t in big]  # in request order
    assert all(a.status_code == 200 for a in small)
    owners = ["small" if call[0].startswith("9") else "big" for call in stub.calls]
    assert owners.count("small") == 3 and owners[-1] == "big" and len(stub.calls[0]) == 4, stub.calls
    assert all(len(call) <= 4 for call in stub.calls) and sum(map(len, stub.calls)) == 27
    assert stats["chunked_requests"] == 1 and stats["upload_chunk_texts"] == 4


def test_task_route_past_request_timeout_answers_504(runs, monkeypatch):
    with stubbed_client(runs, monkeypatch, delay=0.5, request_timeout=0.05) as (client, stub, service):
        answer = client.post("/classify", json={"text": numbered(1, 5)})
        assert answer.status_code == 504 and set(answer.json()) == {"detail"}, answer.text
        assert answer.json()["detail"].startswith("classify: not done within 0.05 s (--request-timeout)")


def test_task_route_past_max_queue_answers_503(runs, monkeypatch):
    with stubbed_client(runs, monkeypatch, delay=0.4, max_queue=1) as (client, stub, service), \
            ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/classify", json={"text": numbered(1, 5)})
        while not stub.calls:
            time.sleep(0.005)
        refused = client.post("/classify", json={"text": numbered(2, 5)})
        assert refused.status_code == 503 and set(refused.json()) == {"detail"}, refused.text
        assert refused.json()["detail"].startswith("classify: the server is busy") and "--max-queue" in refused.text
        assert first.result().status_code == 200
        stats = batching(client)
    assert stats["rejected"] == 1 and stats["requests"] == 1 and stats["max_queue"] == 1


def test_a_failing_item_errors_only_its_own_request(runs, monkeypatch):
    texts = [numbered(i, 8) for i in range(5)] + ["boom"]
    with stubbed_client(runs, monkeypatch, batch_wait_ms=200, raise_server_exceptions=False) as (client, stub, _):
        with ThreadPoolExecutor(6) as pool:
            answers = dict(zip(texts, pool.map(lambda t: client.post("/classify", json={"text": t}), texts)))
        batch = client.post("/classify", json={"items": [{"text": numbered(7, 8)}, {"text": "boom"}]})
    failed = answers.pop("boom")
    assert failed.status_code == 500 and "internal error (ValueError)" in failed.json()["detail"]
    for text, answer in answers.items():
        assert answer.status_code == 200 and answer.json()["label"] == stub.labels[stub.label_id(text)]
    merged = [call for call in stub.calls if "boom" in call and len(call) > 1]
    assert merged and ["boom"] in stub.calls, stub.calls  # failed together, then each request alone
    assert batch.status_code == 500  # a request holding the failing item fails as a whole


def metric(text: str, name: str, **labels) -> float | None:
    """The value of the first sample ``name`` whose labels include ``labels`` (None: no such sample)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return None


def test_metrics_show_task_model_series(runs, monkeypatch):
    with stubbed_client(runs, monkeypatch) as (client, stub, service):
        assert client.post("/classify", json={"text": numbered(1, 5)}).status_code == 200
        items = {"items": [{"text": numbered(2, 5)}, {"text": numbered(3, 5)}]}
        assert client.post("/models/topics/classify", json=items).status_code == 200
        text = client.get("/metrics").text
    assert metric(text, "kluekit_http_requests_total", route="/classify", status="200") == 1
    assert metric(text, "kluekit_http_request_duration_seconds_count", route="/models/topics/classify") == 1
    assert metric(text, "kluekit_batcher_requests_total", model="topics") == 2
    assert metric(text, "kluekit_batcher_texts_total", model="topics") == 3
    assert metric(text, "kluekit_batch_size_sum", model="topics") == 3
    assert metric(text, "kluekit_batch_size_count", model="topics") == len(stub.calls)
    assert metric(text, "kluekit_batcher_queue_depth", model="topics") == 0


# -- the quality gate ---------------------------------------------------------------------------------------
def one_hot(labels, frame, shift=0) -> np.ndarray:
    """Probabilities that put everything on each row's gold label (``shift`` 1: on the next label: all wrong)."""
    ids = (np.array([labels.index(label) for label in frame["label"]]) + shift) % len(labels)
    return np.eye(len(labels))[ids]


def test_quality_gate_logs_both_scores_and_refuses_a_large_drop(runs, monkeypatch, capsys):
    settings = ServeSettings(model=[f"topics={runs['topics']}"], runtime="onnx-int8", check_on=[str(runs["dev"])])
    plan = plan_models(settings)
    model = plan.tasks[0]
    labels = model.predictor.task.labels
    # torch fp32 (the reference Predictor the gate makes) is always right; the int8 model first too, then never
    monkeypatch.setattr(Predictor, "predict", lambda self, frame: one_hot(labels, frame))
    monkeypatch.setattr(model.predictor, "predict", lambda frame: one_hot(labels, frame), raising=False)
    (result,) = check_quality(settings, plan)
    assert result == {"name": "topics", "metric": "macro_f1", "fp32": 100.0, "runtime": "onnx-int8", "score": 100.0,
                      "drop": 0.0}
    assert "torch fp32 100.00, onnx-int8 100.00 (drop 0.00, limit 1)" in capsys.readouterr().out
    monkeypatch.setattr(model.predictor, "predict", lambda frame: one_hot(labels, frame, shift=1), raising=False)
    with pytest.raises(KluekitError, match="--check-on: onnx-int8 loses 100.00 points of macro_f1 against torch fp32 "
                                           "for topics .* more than --max-metric-drop 1"):
        check_quality(settings, plan)
    assert metric_drop(80.0, 78.5, True) == pytest.approx(1.5) and metric_drop(1.0, 1.2, False) == pytest.approx(0.2)
    two = ServeSettings(model=[str(runs["topics"]), str(runs["ner"])], check_on=[str(runs["dev"])])
    with pytest.raises(KluekitError, match="say which model it is for as NAME=FILE"):
        check_quality(two, plan_models(two))


def test_kluekit_serve_refuses_to_start_in_one_line(runs, monkeypatch, capsys):
    labels = json.loads((runs["topics"] / "kluekit.json").read_text())["labels"]
    monkeypatch.setattr(Predictor, "predict", lambda self, frame: one_hot(labels, frame, self.runtime != "torch"))
    code = cli.main(["serve", "--model", str(runs["topics"]), "--runtime", "onnx-int8", "--check-on", str(runs["dev"]),
                     "--port", "1"])
    captured = capsys.readouterr()
    assert code == 2 and "torch fp32 100.00, onnx-int8 0.00" in captured.out
    assert captured.err.count("\n") == 1 and "kluekit: error: --check-on: onnx-int8 loses 100.00 points" in captured.err


def test_quality_gate_with_a_real_int8_export(runs):
    settings = ServeSettings(model=[f"topics={runs['topics']}"], runtime="onnx-int8",
                             check_on=[f"topics={runs['dev']}"], max_metric_drop=100.0)
    (result,) = check_quality(settings, plan_models(settings))
    assert 0 <= result["score"] <= 100 and 0 <= result["fp32"] <= 100 and result["drop"] <= 100
