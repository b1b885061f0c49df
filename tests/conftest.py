"""Shared fixtures. Tests run on small real data and the real machinery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def settings_env(tmp_path, monkeypatch):
    """Point medbuilder's data, runs and datacards folders at a temporary place."""
    from medbuilder.settings import get_settings

    for name in ("data", "runs", "datacards"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"MEDBUILDER_{name.upper()}_DIR", str(tmp_path / name))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
