"""Progress bars: ``TQDM_DISABLE`` turns kluekit's off too (its bars pass ``disable=`` explicitly, which would
override tqdm's own reading of the variable)."""

from __future__ import annotations

from kluekit.inference import bars_off


def test_tqdm_disable_turns_bars_off(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert not bars_off(True) and bars_off(False)
    for value in ("1", "true", "True"):
        monkeypatch.setenv("TQDM_DISABLE", value)
        assert bars_off(True)
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not bars_off(True)
