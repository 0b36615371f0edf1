"""Progress bars: on by default, off with ERASEKIT_PROGRESS=0, whoever imports erasekit."""

from __future__ import annotations


def test_progress_bars_follow_their_switch_only(monkeypatch):
    """Bars do not turn themselves off because pytest is imported: ERASEKIT_PROGRESS alone decides."""
    from erasekit import progress

    monkeypatch.setenv("ERASEKIT_PROGRESS", "1")
    assert progress.enabled()
    monkeypatch.setenv("ERASEKIT_PROGRESS", "0")
    assert not progress.enabled()
