"""Codec tests build events as tests/test_events.py does: no overrides or K_SOURCE."""

from __future__ import annotations

import pytest

from django_cloudevents_bridge import events


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    monkeypatch.delenv("K_CE_OVERRIDES", raising=False)
    monkeypatch.delenv("K_SOURCE", raising=False)
    events.parse_overrides.cache_clear()
