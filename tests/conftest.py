"""Shared fixtures: settings for the small real models, engines loaded once per test session."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from workers.composition import Root
from workers.setup.models import SER_WHISPER_HEAD, WHISPER_BASE, WHISPER_TINY_EN, build_random_ser, setup_models
from workers.core.settings import REPO_ROOT, Settings

def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI timeout, `kill`) ends the run as Ctrl-C does: fixtures tear down and the
    # emulators, which live in sessions of their own, are stopped instead of left behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    models = Path(os.environ.get("MODELS_DIR", REPO_ROOT / ".models"))
    setup_models(models)  # offline and idempotent: joins files, links the emotion head's encoder
    return models


@pytest.fixture(scope="session")
def fast_settings(models_dir: Path) -> Settings:
    """Whisper tiny.en + the default emotion model (the trained head on Whisper base's encoder)."""
    return Settings.from_env({}, models_dir=str(models_dir), stt_model=str(models_dir / WHISPER_TINY_EN))


@pytest.fixture(scope="session")
def base_settings(models_dir: Path) -> Settings:
    """The shipped default: multilingual Whisper base."""
    return Settings.from_env({}, models_dir=str(models_dir), stt_model=str(models_dir / WHISPER_BASE))


@pytest.fixture(scope="session")
def tiny_stt(fast_settings):
    return Root(fast_settings).stt_engine()


@pytest.fixture(scope="session")
def base_stt(base_settings):
    return Root(base_settings).stt_engine()


@pytest.fixture(scope="session")
def default_ser(fast_settings):
    assert fast_settings.ser_model_path.name == SER_WHISPER_HEAD
    return Root(fast_settings).ser_engine()


@pytest.fixture(scope="session")
def untrained_settings(fast_settings, tmp_path_factory) -> Settings:
    """The transformers engine over a tiny random Wav2Vec2 (marked untrained): the path of any checkpoint."""
    model = build_random_ser(tmp_path_factory.mktemp("models") / "ser-wav2vec2-tiny-untrained", size="tiny")
    return fast_settings.replace(ser_engine="transformers", ser_model=str(model))


@pytest.fixture(scope="session")
def tiny_ser(untrained_settings):
    return Root(untrained_settings).ser_engine()
