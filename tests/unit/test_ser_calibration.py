"""Calibration of the emotion head: a temperature and an ``uncertain`` threshold fitted on held-out predictions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from workers.core.errors import ConfigError
from workers.engines.ser_head import HEAD_FILE, SerHead, softmax
from workers.training.calibration import (
    Flagged, HeldOut, calibrate, expected_calibration_error, fit_temperature, probabilities, truths,
    uncertain_threshold,
)


def overconfident(n: int = 600, labels: int = 4, sharpness: float = 4.0, seed: int = 0) -> list[HeldOut]:
    """Held-out clips whose true logits are ``z`` but whose head says ``sharpness * z``: right about as
    often as softmax(z) says, far more sure than that."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        windows = int(rng.integers(1, 4))
        z = rng.normal(size=labels) * 1.5
        truth = int(rng.choice(labels, p=softmax(z)))
        logits = sharpness * (z + rng.normal(scale=0.05, size=(windows, labels)))
        out.append(HeldOut(truth, rng.uniform(0.5, 2.0, size=windows), logits))
    return out


def test_an_overconfident_head_gets_a_temperature_above_one_that_lowers_its_calibration_error() -> None:
    held_out = overconfident()
    temperature = fit_temperature(held_out)
    assert temperature == pytest.approx(4.0, rel=0.3)
    before = expected_calibration_error(probabilities(held_out, 1.0), truths(held_out))
    after = expected_calibration_error(probabilities(held_out, temperature), truths(held_out))
    assert before > 0.15 and after < 0.06 and after < before / 3


def test_a_calibrated_head_keeps_a_temperature_near_one() -> None:
    assert fit_temperature(overconfident(sharpness=1.0, seed=1)) == pytest.approx(1.0, abs=0.25)


def test_the_temperature_never_changes_a_segments_label() -> None:
    held_out = overconfident(n=50)
    assert (probabilities(held_out, 1.0).argmax(1) == probabilities(held_out, 3.7).argmax(1)).all()


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy() -> None:
    probs = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 10)
    truth = np.array([0] * 9 + [1] + [0] * 3 + [1] * 7)  # 0.9 right 90 %; 0.6 right 30 %
    assert expected_calibration_error(probs, truth) == pytest.approx(0.5 * 0.0 + 0.5 * 0.3)


def held_out_bands(accuracy_by_band: dict[float, float], per_band: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Three-label probabilities whose top one (label 0) is spread over each band [u, u + 0.1), right
    ``accuracy`` of the time there."""
    rows, truth = [], []
    for u, accuracy in accuracy_by_band.items():
        for k in range(per_band):
            c = u + 0.1 * (k + 0.5) / per_band
            rows.append([c, (1 - c) / 2, (1 - c) / 2])
            truth.append(0 if k < round(accuracy * per_band) else 1)
    return np.array(rows), np.array(truth)


def test_the_threshold_is_where_every_band_above_it_is_right_more_than_half_the_time() -> None:
    probs, truth = held_out_bands({0.4: 0.3, 0.5: 0.45, 0.6: 0.6, 0.7: 0.7, 0.8: 0.85})
    assert uncertain_threshold(probs, truth) == 0.6  # the band from 0.55 is right 0.525 of the time
    flagged = Flagged.of(probs, truth, 0.6)
    assert flagged.share_uncertain == 0.4 and flagged.accuracy_uncertain == pytest.approx(0.375)
    assert flagged.accuracy_certain == pytest.approx(0.7167, abs=1e-3)


def test_a_dip_higher_up_moves_the_threshold_above_it_and_a_head_right_everywhere_flags_nothing() -> None:
    probs, truth = held_out_bands({0.4: 0.3, 0.5: 0.6, 0.6: 0.4, 0.7: 0.8})
    assert uncertain_threshold(probs, truth) >= 0.65
    probs, truth = held_out_bands({0.4: 0.9, 0.5: 0.9})
    assert uncertain_threshold(probs, truth) == 0.30


def test_a_head_never_right_more_than_half_the_time_calls_everything_uncertain() -> None:
    probs, truth = held_out_bands({0.4: 0.3, 0.5: 0.4})
    threshold = uncertain_threshold(probs, truth)
    assert threshold >= probs.max() and Flagged.of(probs, truth, threshold).share_uncertain == 1.0


def test_with_several_corpora_each_corpus_is_also_scored_under_a_calibration_fitted_without_it() -> None:
    corpora = {"a": overconfident(200, seed=2), "b": overconfident(200, seed=3), "c": overconfident(200, seed=4)}
    calibration = calibrate([h for part in corpora.values() for h in part], corpora)
    assert calibration.fitted_on == "leave-one-corpus-out" and calibration.temperature > 2
    names = [f.name for f in calibration.figures]
    assert names == ["leave-one-speaker-out", "leave-one-corpus-out: all corpora",
                     *(f"leave-one-corpus-out: {c}, calibrated on the other corpora" for c in "abc")]
    for f in calibration.figures:
        assert f.ece_after < f.ece_before
    single = calibrate(corpora["a"], {})
    assert single.fitted_on == "leave-one-speaker-out" and len(single.figures) == 1


def random_head(seed: int = 0) -> SerHead:
    rng = np.random.default_rng(seed)
    return SerHead(name="random", labels=("a", "b", "c"), encoder_id="enc", window_seconds=3.0, hop_seconds=1.5,
                   mean=rng.normal(size=6), scale=rng.uniform(0.5, 2, size=6), weights=rng.normal(size=(6, 3)),
                   bias=rng.normal(size=3), probe=rng.normal(size=6))


def test_a_heads_temperature_and_threshold_round_trip_and_divide_its_logits(tmp_path) -> None:
    plain = random_head()
    head = dataclasses.replace(plain, temperature=2.5, uncertain_below=0.55)
    head.save(tmp_path / HEAD_FILE)
    loaded = SerHead.load(tmp_path / HEAD_FILE)
    assert (loaded.temperature, loaded.uncertain_below) == (2.5, 0.55)
    x = np.random.default_rng(1).normal(size=(4, 6))
    assert np.allclose(loaded.probabilities(x), softmax(plain.logits(x) / 2.5), atol=1e-5)
    assert np.allclose(loaded.probabilities(x, calibrated=False), plain.probabilities(x), atol=1e-5)
    assert head.head_id != plain.head_id, "other probabilities, another id"


def test_a_head_written_before_calibration_loads_with_temperature_one_and_no_threshold(tmp_path) -> None:
    random_head().save(tmp_path / HEAD_FILE)
    with np.load(tmp_path / HEAD_FILE, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    del meta["temperature"], meta["uncertain_below"]
    with (tmp_path / "old.npz").open("wb") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)
    old = SerHead.load(tmp_path / "old.npz")
    assert (old.temperature, old.uncertain_below) == (1.0, None) and old.head_id == random_head().head_id


def test_a_temperature_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ConfigError, match="temperature 0.0 is not positive"):
        dataclasses.replace(random_head(), temperature=0.0)
