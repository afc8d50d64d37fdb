"""The whisper-head SER engine: the head file, the encoder check, and a known answer through training."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.audio_factory import noise, tone
from workers.processing.audio import SAMPLE_RATE
from workers.engines.ser import window_bounds
from workers.engines.ser_head import HEAD_FILE, SerHead
from workers.engines.ser_whisper import WhisperHeadEmotionEngine, check_head_fits
from workers.engines.whisper_encoder import WhisperEncoder
from workers.engines.whisper_layers import feature_encoder
from workers.core.errors import ConfigError
from workers.setup.models import DEFAULT_HEAD, WHISPER_BASE, WHISPER_TINY_EN
from workers.training.ser_training import Clip, Dataset, TrainOptions, extract_features, fit_head, write_model


def random_head(dims: int = 8, labels: tuple[str, ...] = ("calm", "angry", "sad"), seed: int = 0) -> SerHead:
    rng = np.random.default_rng(seed)
    return SerHead(name="random", labels=labels, encoder_id="enc", window_seconds=3.0, hop_seconds=1.5,
                   mean=rng.normal(size=dims), scale=rng.uniform(0.5, 2, size=dims),
                   weights=rng.normal(size=(dims, len(labels))), bias=rng.normal(size=len(labels)),
                   probe=rng.normal(size=dims), training={"dataset": "none"})


@pytest.fixture(scope="module")
def base_encoder(models_dir) -> WhisperEncoder:
    return WhisperEncoder(models_dir / WHISPER_BASE, device="cpu")


def test_a_head_file_round_trips_as_plain_arrays(tmp_path) -> None:
    head = random_head()
    head.save(tmp_path / HEAD_FILE)
    with zipfile.ZipFile(tmp_path / HEAD_FILE) as z:
        assert sorted(z.namelist()) == sorted(f"{n}.npy" for n in ("meta", "mean", "scale", "weights", "bias", "probe"))
    with np.load(tmp_path / HEAD_FILE, allow_pickle=False) as data:  # no object arrays anywhere
        assert all(data[name].dtype != object for name in data.files)
    loaded = SerHead.load(tmp_path / HEAD_FILE)
    assert loaded.head_id == head.head_id and loaded.labels == head.labels and loaded.training == head.training
    x = np.random.default_rng(1).normal(size=(5, 8))
    assert np.allclose(loaded.probabilities(x), head.probabilities(x), atol=1e-5)
    assert np.allclose(loaded.probabilities(x).sum(axis=1), 1.0)


def test_a_retrained_head_gets_a_new_id() -> None:
    assert random_head(seed=0).head_id != random_head(seed=1).head_id
    assert random_head(seed=0).head_id.startswith("random@")


def test_files_that_are_not_heads_are_refused_clearly(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no emotion head"):
        SerHead.load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="not an emotion head file"):
        SerHead.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "something-else", "format_version": 1}'),
             mean=np.zeros(2), scale=np.ones(2), weights=np.zeros((2, 2)), bias=np.zeros(2), probe=np.ones(2))
    with pytest.raises(ConfigError, match="not a 'speech-pipeline/ser-head'"):
        SerHead.load(tmp_path / "other.npz")


def test_the_committed_head_fits_the_base_encoder_and_refuses_others(models_dir) -> None:
    head = SerHead.load(DEFAULT_HEAD / HEAD_FILE)
    base = feature_encoder(models_dir / WHISPER_BASE, layers=head.layers, layer_mix=head.layer_mix, device="cpu")
    check_head_fits(head, base)
    tiny = feature_encoder(models_dir / WHISPER_TINY_EN, layers=head.layers, layer_mix=head.layer_mix, device="cpu")
    with pytest.raises(ConfigError, match="512-dimensional features"):
        check_head_fits(head, tiny)
    # Same width, other features (as another checkpoint under the same folder name would give).
    other = dataclasses.replace(head, probe=np.random.default_rng(0).normal(size=head.dims))
    with pytest.raises(ConfigError, match="makes other features"):
        check_head_fits(other, base)


def test_the_default_engine_scores_every_label_of_every_window(default_ser) -> None:
    audio = noise(7.0, amplitude=0.1)
    track = default_ser.classify(audio)
    assert track.labels == ["angry", "happy", "neutral", "sad"]
    assert [(round(w.start * SAMPLE_RATE), round(w.end * SAMPLE_RATE)) for w in track.windows] == window_bounds(
        len(audio), 3 * SAMPLE_RATE, 3 * SAMPLE_RATE // 2)
    scores = np.array([w.scores for w in track.windows])
    assert scores.shape == (4, 4) and np.allclose(scores.sum(axis=1), 1.0)
    engine = default_ser.engine
    assert (engine.name, engine.trained) == ("whisper-head", True)
    assert engine.model.startswith("whisper-base-ct2+four-corpora-whisper-base@")
    assert "non-commercial" in engine.licence and "train-ser" in engine.licence, "the default head's terms travel"


def test_a_tenth_of_a_second_gets_one_window(default_ser) -> None:
    track = default_ser.classify(noise(0.1))
    assert [(w.start, w.end) for w in track.windows] == [(0.0, 0.1)]
    assert sum(track.windows[0].scores) == pytest.approx(1.0)


def test_batching_does_not_change_the_scores(models_dir, base_encoder) -> None:
    audio = np.concatenate([tone(4.0), noise(5.0, amplitude=0.2)])
    one = WhisperEncoder(models_dir / WHISPER_BASE, device="cpu", batch_size=1).pooled(audio, 48000, 24000)[1]
    many = base_encoder.pooled(audio, 48000, 24000)[1]
    cosine = (one * many).sum(1) / np.linalg.norm(one, axis=1) / np.linalg.norm(many, axis=1)
    assert cosine.min() > 0.999


def tone_or_noise_dataset() -> Dataset:
    """Tones ('calm') and noise ('angry') of three 'speakers', three clips of each label apiece."""
    clips = []
    for speaker in ("a", "b", "c"):
        for k in range(3):
            clips.append(Clip(f"{speaker}{k}t", "calm", speaker, tone(2.0 + k / 2, freq=220 * (k + 1), amplitude=0.2)))
            clips.append(Clip(f"{speaker}{k}n", "angry", speaker, noise(2.0 + k / 2, amplitude=0.3, seed=k)))
    dataset = Dataset(clips, ("angry", "calm"), ("a", "b", "c"))
    return dataset


@pytest.fixture(scope="module")
def tone_or_noise_model(tmp_path_factory, base_encoder, models_dir) -> Path:
    """A head trained by the training code on tones ('calm') and noise ('angry'), three 'speakers'."""
    dataset = tone_or_noise_dataset()
    options = TrainOptions()
    features = extract_features(dataset, base_encoder, options)
    head = fit_head(dataset, features, dataset.speakers, options, name="tone-or-noise", encoder=base_encoder)
    out = tmp_path_factory.mktemp("ser") / "tone-or-noise"
    write_model(out, head, "card", models_dir / WHISPER_BASE)
    return out


def test_known_answer_windows_follow_the_audio(tone_or_noise_model) -> None:
    engine = WhisperHeadEmotionEngine(tone_or_noise_model, device="cpu")
    track = engine.classify(np.concatenate([tone(6.0, freq=330, amplitude=0.2), noise(6.0, amplitude=0.3, seed=7)]))
    assert track.labels == ["angry", "calm"]
    assert [(w.start, w.end) for w in track.windows] == [
        (0.0, 3.0), (1.5, 4.5), (3.0, 6.0), (4.5, 7.5), (6.0, 9.0), (7.5, 10.5), (9.0, 12.0)]
    angry = np.array([w.scores[0] for w in track.windows])
    assert (angry[:3] < 0.1).all(), "tone windows are calm"
    assert (angry[4:] > 0.9).all(), "noise windows are angry"
    assert engine.engine.model.startswith("whisper-base-ct2+tone-or-noise@")


def test_an_engine_over_another_encoder_is_refused_at_start(tone_or_noise_model, models_dir, tmp_path) -> None:
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / HEAD_FILE).write_bytes((tone_or_noise_model / HEAD_FILE).read_bytes())
    (moved / "encoder").symlink_to(models_dir / WHISPER_TINY_EN)
    with pytest.raises(ConfigError, match="train a head for it"):
        WhisperHeadEmotionEngine(moved, device="cpu")


def test_encoder_features_that_are_not_finite_fail_the_window_instead_of_becoming_zeros(base_encoder) -> None:
    from workers.core.errors import PermanentError

    audio = tone(4.0, amplitude=0.2)
    audio[int(3.5 * SAMPLE_RATE)] = np.nan
    first_window = r"encoder features of 1 window\(s\), the first at 2\.00-4\.00 s"
    with pytest.raises(PermanentError, match=first_window) as failed:
        base_encoder.pooled(audio, 2 * SAMPLE_RATE, 2 * SAMPLE_RATE)
    assert failed.value.code == "non_finite_scores"


def test_pooling_loudness_and_licence_round_trip_and_old_heads_read_as_mean_pooled(tmp_path) -> None:
    head = dataclasses.replace(random_head(), pooling="mean+std", loudness="mel-peak", licence="research only")
    head.save(tmp_path / HEAD_FILE)
    loaded = SerHead.load(tmp_path / HEAD_FILE)
    assert (loaded.pooling, loaded.loudness, loaded.licence) == ("mean+std", "mel-peak", "research only")
    assert loaded.head_id == head.head_id != random_head().head_id, "the pooling is part of the head's identity"
    old = SerHead.load(DEFAULT_HEAD / HEAD_FILE) if "pooling" not in _meta(DEFAULT_HEAD / HEAD_FILE) else random_head()
    assert (old.pooling, old.loudness) == ("mean", "none")


def _meta(path: Path) -> dict:
    import json

    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))


def test_mean_std_pooling_doubles_the_features_and_keeps_the_mean_first(base_encoder) -> None:
    audio = tone(2.0, freq=220, amplitude=0.2) + noise(2.0, amplitude=0.02, seed=3)
    _, mean = base_encoder.pooled(audio, 3 * SAMPLE_RATE, SAMPLE_RATE)
    _, both = base_encoder.pooled(audio, 3 * SAMPLE_RATE, SAMPLE_RATE, pooling="mean+std")
    assert both.shape == (1, 2 * mean.shape[1])
    assert np.allclose(both[:, : mean.shape[1]], mean, atol=1e-5) and (both[:, mean.shape[1]:] > 0).all()
    with pytest.raises(ConfigError, match="unknown pooling"):
        base_encoder.pooled(audio, 3 * SAMPLE_RATE, SAMPLE_RATE, pooling="max")


def test_mel_peak_loudness_removes_the_recordings_gain(base_encoder) -> None:
    rng = np.random.default_rng(5)
    voice = (tone(3.0, freq=180, amplitude=0.3) * (0.5 + 0.5 * np.sin(np.linspace(0, 24, 3 * SAMPLE_RATE)) ** 2)
             + 0.01 * rng.normal(size=3 * SAMPLE_RATE)).astype(np.float32)

    def features(gain: float, loudness: str) -> np.ndarray:
        return base_encoder.pooled(voice * gain, 3 * SAMPLE_RATE, SAMPLE_RATE, loudness=loudness)[1][0]

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b) / np.linalg.norm(a))

    loud, quiet = features(1.0, "mel-peak"), features(0.05, "mel-peak")
    assert distance(loud, quiet) < 0.02, "a gain of 1/20 (-26 dB) leaves the normalised features as they were"
    assert distance(features(1.0, "none"), features(0.05, "none")) > 5 * distance(loud, quiet)


def test_the_heads_licence_note_is_reported_in_the_engine_of_every_result(tone_or_noise_model, tmp_path) -> None:
    plain = WhisperHeadEmotionEngine(tone_or_noise_model, device="cpu")
    assert plain.engine.licence is None, "a head without a note reports none (not an empty string)"
    noted = tmp_path / "noted"
    noted.mkdir()
    head = dataclasses.replace(SerHead.load(tone_or_noise_model / HEAD_FILE), licence="research use only")
    head.save(noted / HEAD_FILE)
    (noted / "encoder").symlink_to((tone_or_noise_model / "encoder").resolve())
    assert WhisperHeadEmotionEngine(noted, device="cpu").engine.licence == "research use only"


def test_the_engine_applies_the_heads_temperature_and_reports_its_uncertain_threshold(tone_or_noise_model,
                                                                                      tmp_path) -> None:
    from workers.processing.audio import DecodedAudio
    from workers.processing.worker import SerWorker

    audio = np.concatenate([tone(3.0, freq=330, amplitude=0.2), noise(3.0, amplitude=0.3, seed=7)])
    plain = WhisperHeadEmotionEngine(tone_or_noise_model, device="cpu")
    assert plain.classify(audio).uncertain_below is None, "a head without a threshold states none"
    calibrated = tmp_path / "calibrated"
    calibrated.mkdir()
    head = dataclasses.replace(SerHead.load(tone_or_noise_model / HEAD_FILE), temperature=8.0, uncertain_below=0.6)
    head.save(calibrated / HEAD_FILE)
    (calibrated / "encoder").symlink_to((tone_or_noise_model / "encoder").resolve())
    engine = WhisperHeadEmotionEngine(calibrated, device="cpu")
    sharp = np.array([w.scores for w in plain.classify(audio).windows])
    soft = np.array([w.scores for w in engine.classify(audio).windows])
    assert (sharp.argmax(1) == soft.argmax(1)).all() and soft.max() < sharp.max()
    logits = np.log(sharp)  # softmax(z / T) from softmax(z): the same logits up to a constant per row
    expected = np.exp(logits / 8.0) / np.exp(logits / 8.0).sum(axis=1, keepdims=True)
    assert np.allclose(soft, expected, atol=1e-4)
    partial = SerWorker(engine).analyse("job", DecodedAudio(audio, "wav", SAMPLE_RATE, 1))
    assert partial.uncertain_below == 0.6
