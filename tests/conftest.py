"""Shared fixtures. Tests run on small real data and the real machinery."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# one preprocessed store per test process, shared by its builds as a user's builds share theirs, never the checkout's
os.environ.setdefault("MEDBUILDER_CACHE_DIR", tempfile.mkdtemp(prefix="medbuilder-test-store-"))

REPO = Path(__file__).resolve().parent.parent


def _redirect(tmp_path: Path, monkeypatch, names: tuple[str, ...]) -> Path:
    from medbuilder.settings import get_settings

    for name in names:
        (tmp_path / name).mkdir(exist_ok=True)
        monkeypatch.setenv(f"MEDBUILDER_{name.upper()}_DIR", str(tmp_path / name))
    get_settings.cache_clear()
    return tmp_path


@pytest.fixture()
def settings_env(tmp_path, monkeypatch):
    """Data, runs and datacards folders in a temporary place (no datacards at first)."""
    yield _redirect(tmp_path, monkeypatch, ("data", "runs", "datacards"))
    from medbuilder.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture()
def data_env(tmp_path, monkeypatch):
    """Data and runs folders in a temporary place; the shipped datacards."""
    yield _redirect(tmp_path, monkeypatch, ("data", "runs"))
    from medbuilder.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_api():
    """One real Prefect server (temporary SQLite) for the whole session; yields its API URL."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture()
def br35h_small(data_env, monkeypatch):
    """20 real Br35H images in the data folder, short training for flow tests."""
    from medbuilder.protocol.datasets import prepare
    from medbuilder.settings import get_settings

    prepare("br35h", data_env / "data" / "br35h", limit=10, echo=lambda *_: None)
    monkeypatch.setenv("MEDBUILDER_TRAIN_TIME_LIMIT_S", "8")
    monkeypatch.setenv("MEDBUILDER_ECHO_SCRIPTS", "false")
    get_settings.cache_clear()
    return data_env
