"""Whisper's encoder block by block (intermediate layers for the emotion head): the same features as
CTranslate2 at the last layer, heads that name their layers, and the engine that runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.audio_factory import noise, tone
from tests.unit.test_ser_whisper import tone_or_noise_dataset
from workers.core.errors import ConfigError
from workers.engines.ser_head import HEAD_FILE, SerHead
from workers.engines.ser_whisper import WhisperHeadEmotionEngine, check_head_fits
from workers.engines.whisper_encoder import WhisperEncoder
from workers.engines.whisper_layers import WhisperLayerEncoder, check_layers, feature_encoder
from workers.setup.models import DEFAULT_HEAD, WHISPER_BASE
from workers.training.ser_training import (
    TrainOptions, extract_features, fit_head, options_from_record, options_record, write_model,
)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def speech_like() -> np.ndarray:
    return np.concatenate([tone(2.5, freq=180, amplitude=0.2), noise(3.0, amplitude=0.1, seed=3),
                           tone(1.0, freq=260, amplitude=0.05)])


def test_the_last_layer_block_by_block_is_what_ctranslate2_gives(models_dir, speech_like) -> None:
    ct2 = WhisperEncoder(models_dir / WHISPER_BASE, device="cpu", compute_type="float32")
    blocks = WhisperLayerEncoder(models_dir / WHISPER_BASE, layers=(6,))
    for pooling, loudness in (("mean", "none"), ("mean+std", "mel-peak")):
        a = ct2.pooled(speech_like, 48000, 24000, pooling=pooling, loudness=loudness)[1]
        b = blocks.pooled(speech_like, 48000, 24000, pooling=pooling, loudness=loudness)[1]
        assert a.shape == b.shape and cosines(a, b).min() > 0.9999


def test_layers_concatenate_or_average_and_a_window_does_not_depend_on_its_batch(models_dir, speech_like) -> None:
    path = models_dir / WHISPER_BASE
    three, five = (WhisperLayerEncoder(path, layers=(k,)).pooled(speech_like, 48000, 24000)[1] for k in (3, 5))
    both = WhisperLayerEncoder(path, layers=(5, 3)).pooled(speech_like, 48000, 24000)[1]
    mixed = WhisperLayerEncoder(path, layers=(3, 5), layer_mix="mean", batch_size=1).pooled(
        speech_like, 48000, 24000)[1]
    assert three.shape == (len(three), 512) and both.shape == (len(three), 1024)
    assert np.allclose(both, np.hstack([three, five]), atol=1e-4)
    assert np.allclose(mixed, (three + five) / 2, atol=1e-4)
    assert cosines(three, WhisperEncoder(path, device="cpu").pooled(speech_like, 48000, 24000)[1]).max() < 0.97, \
        "a middle layer is another feature than the last (and a head over it must not load over the last)"


def test_layers_the_encoder_lacks_are_refused_clearly() -> None:
    assert check_layers((4, 2, 4), 6) == (2, 4)
    for bad in ((7,), (-1,), ()):
        with pytest.raises(ConfigError, match="layers 0 .* to 6"):
            check_layers(bad, 6)
    with pytest.raises(ConfigError, match="layer mix"):
        check_layers((3,), 6, "max")


def test_a_head_records_its_layers_and_heads_before_them_load_as_before(tmp_path) -> None:
    committed = SerHead.load(DEFAULT_HEAD / HEAD_FILE)
    with np.load(DEFAULT_HEAD / HEAD_FILE, allow_pickle=False) as data:
        assert committed.head_id == json.loads(str(data["meta"]))["head_id"], "the id it was written with"
    rng = np.random.default_rng(0)
    head = SerHead(name="h", labels=("a", "b"), encoder_id="enc", window_seconds=3.0, hop_seconds=1.5,
                   mean=rng.normal(size=4), scale=np.ones(4), weights=rng.normal(size=(4, 2)), bias=np.zeros(2),
                   probe=rng.normal(size=4), layers=(2, 4), layer_mix="mean")
    head.save(tmp_path / HEAD_FILE)
    loaded = SerHead.load(tmp_path / HEAD_FILE)
    assert (loaded.layers, loaded.layer_mix, loaded.head_id) == ((2, 4), "mean", head.head_id)
    last = SerHead(**{**head.__dict__, "layers": (), "layer_mix": "concat"})
    assert last.head_id != head.head_id, "the layers are part of what the head is"
    last.save(tmp_path / "old.npz")  # a head over the last layer is written as before layers existed
    with np.load(tmp_path / "old.npz", allow_pickle=False) as data:
        assert not {"layers", "layer_mix"} & set(json.loads(str(data["meta"])))
    assert SerHead.load(tmp_path / "old.npz").layers == ()
    record = options_record(TrainOptions(layers=(3,)))
    assert options_from_record(record).layers == (3,)
    assert options_from_record({k: v for k, v in record.items() if k not in ("layers", "layer_mix")}).layers == ()


def test_a_head_over_a_middle_layer_is_trained_saved_and_run_by_the_engine(models_dir, tmp_path) -> None:
    encoder = feature_encoder(models_dir / WHISPER_BASE, layers=(3,), device="cpu", compute_type="float32")
    assert isinstance(encoder, WhisperLayerEncoder)
    dataset = tone_or_noise_dataset()
    options = TrainOptions(layers=(3,), streams=False)
    features = extract_features(dataset, encoder, options)
    head = fit_head(dataset, features, dataset.speakers, options, name="layer3", encoder=encoder)
    assert head.layers == (3,)
    write_model(tmp_path / "m", head, "card", models_dir / WHISPER_BASE)
    engine = WhisperHeadEmotionEngine(tmp_path / "m", device="cpu")
    assert isinstance(engine.encoder, WhisperLayerEncoder) and engine.encoder.layers == (3,)
    track = engine.classify(np.concatenate([tone(6.0, freq=330, amplitude=0.2), noise(6.0, amplitude=0.3, seed=7)]))
    angry = np.array([w.scores[0] for w in track.windows])
    assert (angry[:3] < 0.2).all() and (angry[4:] > 0.8).all()
    with pytest.raises(ConfigError, match="makes other features"):  # the same head over the last layer
        check_head_fits(head, WhisperEncoder(models_dir / WHISPER_BASE, device="cpu"))
