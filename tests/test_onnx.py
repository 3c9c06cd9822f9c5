"""CPU inference through ONNX Runtime (``--runtime onnx`` / ``onnx-int8``): the exported graph gives the torch
model's logits, predict/evaluate/serve answer as with torch, the export is cached and reused, and bad
combinations fail in one clear line.

One tiny STS run and the tiny bi-encoder are exported once each (a few seconds on 2 cores); the tests share them.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from kluekit import cli, onnxrun
from kluekit.embedding.encoding import encode, load_biencoder
from kluekit.errors import KluekitError
from kluekit.inference import predict_raw
from kluekit.predictor import Predictor
from kluekit.rundir import RunDir
from kluekit.serving import ServeSettings
from kluekit.serving.app import create_app

pytest.importorskip("onnxruntime")

PAIRS = [("오늘 날씨가 좋다", "날씨가 맑다"), ("배송이 빨라요", "영화가 지루했다"), ("주말에 등산을 갔다", "주말에 산에 올랐다")]


@pytest.fixture(scope="module")
def sts_run(tmp_path_factory, tiny_model, sts_train_csv):
    """A tiny STS cross-encoder, in a folder of this module's own (its ONNX cache is under test here)."""
    from tiny_model import train_tiny_sts

    return train_tiny_sts(tiny_model, sts_train_csv, tmp_path_factory.mktemp("onnx-sts"))


@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory, sts_dev_json):
    """The first 96 labelled dev pairs as a CSV."""
    from kluekit.data.sts import read_sts

    path = tmp_path_factory.mktemp("onnx-data") / "dev.csv"
    read_sts(sts_dev_json).head(96)[["id", "source", "sentence1", "sentence2", "label"]].to_csv(path, index=False)
    return path


def logits_of(run, examples, runtime):
    predictor = Predictor(run, "sts", runtime=runtime, progress=False)
    tokenizer, model, device, precision = predictor.load()
    features = predictor.task.encode(examples, tokenizer, 64)
    return predict_raw(predictor.task, model, tokenizer, features, 32, device, precision, progress=False)


def test_onnx_logits_equal_torch_and_int8_stays_close(sts_run, dev_slice):
    examples = RunDir.open(sts_run).task().read(dev_slice)
    torch_logits = logits_of(sts_run, examples, "torch")[:, 0]
    onnx_logits = logits_of(sts_run, examples, "onnx")[:, 0]
    int8_logits = logits_of(sts_run, examples, "onnx-int8")[:, 0]
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4
    assert not np.array_equal(int8_logits, torch_logits)  # it really ran the quantized graph
    assert np.abs(int8_logits - torch_logits).max() < 0.05  # on the 0-5 scale (quality: benchmarks/cpu_predict.py)
    assert sorted(p.name for p in (sts_run / "onnx").iterdir()) == ["model.int8.onnx", "model.onnx"]


def test_predict_and_evaluate_with_onnx_write_what_torch_writes(sts_run, dev_slice, tmp_path, capsys):
    outputs = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        out = tmp_path / f"{runtime}.csv"
        assert cli.main(["predict", "sts", "--model", str(sts_run), "--input", str(dev_slice), "--output", str(out),
                         "--runtime", runtime]) == 0
        outputs[runtime] = pd.read_csv(out)
    assert list(outputs["onnx"].columns) == list(outputs["torch"].columns) == ["id", "target"]
    assert outputs["onnx"]["id"].tolist() == outputs["torch"]["id"].tolist()
    assert np.abs(outputs["onnx"]["target"] - outputs["torch"]["target"]).max() < 1e-4
    assert np.abs(outputs["onnx-int8"]["target"] - outputs["torch"]["target"]).max() < 0.5
    assert cli.main(["evaluate", "sts", "--model", str(sts_run), "--input", str(dev_slice), "--runtime", "onnx",
                     "--output-dir", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "pearson:" in printed and (tmp_path / "eval" / "predictions.csv").is_file()


def test_the_export_is_reused_until_the_weights_change(sts_run, dev_slice, monkeypatch):
    examples = RunDir.open(sts_run).task().read(dev_slice)
    before = logits_of(sts_run, examples, "onnx")  # exported by an earlier test, or now
    calls, graph = [], (sts_run / "onnx" / "model.onnx").read_bytes()
    # counts exports, and writes the same graph again rather than spending seconds on a real export
    monkeypatch.setattr(onnxrun, "export_onnx", lambda *args, **kw: calls.append(args) or args[3].write_bytes(graph))
    assert np.array_equal(logits_of(sts_run, examples, "onnx"), before) and calls == []
    weights = sts_run / "model.safetensors"
    newer = max(p.stat().st_mtime_ns for p in (sts_run / "onnx").iterdir()) + 1000
    os.utime(weights, ns=(newer, newer))  # a retrained model: exported again, int8 quantized again
    logits_of(sts_run, examples, "onnx-int8")
    assert len(calls) == 1
    assert (sts_run / "onnx" / "model.int8.onnx").stat().st_mtime_ns > newer
    assert not [p for p in (sts_run / "onnx").iterdir() if p.name.endswith(".tmp")]


def test_bad_combinations_and_missing_pieces_fail_in_one_line(sts_run, dev_slice, tmp_path, capsys, monkeypatch):
    assert cli.main(["predict", "sts", "--model", str(sts_run), "--input", str(dev_slice), "--output",
                     str(tmp_path / "out.csv"), "--runtime", "onnx", "--precision", "bf16"]) == 2
    assert "--precision bf16 cannot be used with --runtime onnx" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        cli.main(["evaluate", "sts", "--model", str(sts_run), "--input", str(dev_slice), "--runtime", "tensorrt"])
    assert "--runtime: invalid choice: 'tensorrt'" in capsys.readouterr().err

    copy = tmp_path / "readonly-run"
    shutil.copytree(sts_run, copy, ignore=shutil.ignore_patterns("onnx"))
    (copy / "onnx").write_text("a file where the cache folder would go")  # as root, chmod would not stop us
    with pytest.raises(KluekitError, match=r"cannot write the ONNX export into .*readonly-run/onnx"):
        Predictor(copy, runtime="onnx").load()

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(KluekitError, match=r"pip install 'kluekit\[onnx\]'"):
        Predictor(sts_run, runtime="onnx").load()


def test_a_read_only_model_folder_is_left_alone(sts_run, dev_slice, tmp_path, monkeypatch):
    """A model folder marked read-only (a shared model; even for root) gets its export in KLUEKIT_CACHE."""
    copy = tmp_path / "shared-run"
    shutil.copytree(sts_run, copy, ignore=shutil.ignore_patterns("onnx"))
    monkeypatch.setenv("KLUEKIT_CACHE", str(tmp_path / "cache"))
    copy.chmod(0o555)
    try:
        examples = RunDir.open(sts_run).task().read(dev_slice).head(8)
        np.testing.assert_allclose(logits_of(copy, examples, "onnx-int8"), logits_of(sts_run, examples, "onnx-int8"),
                                   atol=1e-5)
        assert not (copy / "onnx").exists()
        [folder] = (tmp_path / "cache" / "onnx").iterdir()
        assert folder.name.startswith("shared-run-")
        assert sorted(p.name for p in folder.iterdir()) == ["model.int8.onnx", "model.onnx"]
    finally:
        copy.chmod(0o755)


def test_serve_with_onnx_answers_as_with_torch(tiny_biencoder, sts_run, tmp_path):
    biencoder = tmp_path / "biencoder"  # a copy: the export is written next to the model
    shutil.copytree(tiny_biencoder, biencoder)
    reference = load_biencoder(str(biencoder))
    texts = [text for pair in PAIRS for text in pair]
    expected_vectors = encode(reference, texts)
    body = {"pairs": [{"sentence1": a, "sentence2": b} for a, b in PAIRS], "rerank": True}
    answers = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        settings = ServeSettings(model=str(biencoder), cross_encoder=str(sts_run), runtime=runtime, batch_wait_ms=0)
        with TestClient(create_app(settings)) as client:
            assert client.get("/health").json()["runtime"] == runtime
            answers[runtime] = client.post("/similarity", json=body).json()["results"]
            if runtime == "onnx":
                vectors = client.app.state.service.model.encode(texts, batch_size=2, normalize_embeddings=True)
                assert np.einsum("ij,ij->i", vectors, expected_vectors).min() > 1 - 1e-4
    for key in ("cosine", "score", "rerank_score"):
        torch_values = np.array([r[key] for r in answers["torch"]])
        assert np.abs(np.array([r[key] for r in answers["onnx"]]) - torch_values).max() < 1e-4, key
        assert np.abs(np.array([r[key] for r in answers["onnx-int8"]]) - torch_values).max() < 0.5, key
    assert [r["sentence1"] for r in answers["onnx"]] == [a for a, _ in PAIRS]
    assert sorted(p.name for p in (biencoder / "onnx").iterdir()) == ["encoder.int8.onnx", "encoder.onnx"]


def test_onnx_threads_spin_only_when_openmp_may(sts_run, dev_slice, monkeypatch):
    """Under OMP_WAIT_POLICY=PASSIVE (what kluekit serve's benchmark sets, so idle threads leave the cores to the
    event loop) ONNX Runtime's threads do not spin either; otherwise its default (spinning) stays."""
    logits_of(sts_run, RunDir.open(sts_run).task().read(dev_slice).head(4), "onnx")  # exported (or reused)
    path = sts_run / "onnx" / "model.onnx"

    def spinning(policy):
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
        options = onnxrun.OnnxModel(path).session.get_session_options()
        try:
            return options.get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: ONNX Runtime's default, spinning
            return "default"

    assert spinning("PASSIVE") == "0" and spinning("ACTIVE") == "default"


def test_each_model_may_have_its_own_runtime(tiny_biencoder, sts_run, tmp_path, capsys):
    """--model-runtime NAME=RUNTIME: the task model in int8 beside the bi-encoder in torch; bad values are one line."""
    biencoder = tmp_path / "biencoder"
    shutil.copytree(tiny_biencoder, biencoder)
    settings = ServeSettings(model=[str(biencoder), f"pairs={sts_run}"], model_runtime=["pairs=onnx-int8"],
                             batch_wait_ms=0)
    body = {"sentence1": PAIRS[0][0], "sentence2": PAIRS[0][1]}
    with TestClient(create_app(settings)) as client:
        runtimes = {m["name"]: m["runtime"] for m in client.get("/health").json()["models"]}
        assert runtimes == {"biencoder": "torch", "pairs": "onnx-int8"}
        assert client.post("/models/pairs/similarity", json=body).status_code == 200
    assert not (biencoder / "onnx").exists()  # the bi-encoder ran in torch
    for value, message in (("nope=onnx", "--model-runtime: no model is named 'nope'"),
                           ("pairs=tensorrt", "--model-runtime: 'pairs=tensorrt' must be NAME=RUNTIME")):
        assert cli.main(["serve", "--model", str(biencoder), f"pairs={sts_run}", "--model-runtime", value]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
