"""--cross-encoder is checked before anything loads: one line for a missing folder, a folder that is no run, and a
run of another task."""

from __future__ import annotations

import json

import pytest

from kluekit.errors import KluekitError
from kluekit.serving.rerank import check_cross_encoder


def test_cross_encoder_must_be_an_sts_run(tmp_path):
    with pytest.raises(KluekitError, match="no such directory"):
        check_cross_encoder(str(tmp_path / "missing"))
    with pytest.raises(KluekitError, match=r"--cross-encoder: .* is not a kluekit run directory \(no kluekit.json\)"):
        check_cross_encoder(str(tmp_path))
    (tmp_path / "kluekit.json").write_text(json.dumps({"task": "biencoder"}))
    with pytest.raises(KluekitError, match="is a 'biencoder' run; it must be a 'kluekit train sts' run directory"):
        check_cross_encoder(str(tmp_path))
    (tmp_path / "kluekit.json").write_text(json.dumps({"task": "sts"}))
    check_cross_encoder(str(tmp_path))  # accepted
