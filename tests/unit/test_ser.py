"""Windowed emotion recognition against a classifier whose answer the test controls."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio_factory import noise
from tests.known_answer_ser import LABELS, build_loudness_classifier
from workers.processing.audio import SAMPLE_RATE
from workers.engines.ser import TransformersEmotionEngine, window_bounds


@pytest.fixture(scope="module")
def loudness_model(tmp_path_factory):
    return build_loudness_classifier(tmp_path_factory.mktemp("ser") / "loudness-classifier")


def loud_then_quiet() -> np.ndarray:
    return np.concatenate([noise(6.0, amplitude=0.5), noise(6.0, amplitude=0.001, seed=1)])


def test_windows_score_every_label_in_order_and_follow_the_audio(loudness_model) -> None:
    engine = TransformersEmotionEngine(loudness_model, device="cpu", window_seconds=3.0, hop_seconds=1.5)
    track = engine.classify(loud_then_quiet())
    assert track.labels == LABELS
    assert [(w.start, w.end) for w in track.windows] == [
        (0.0, 3.0), (1.5, 4.5), (3.0, 6.0), (4.5, 7.5), (6.0, 9.0), (7.5, 10.5), (9.0, 12.0)
    ]
    scores = np.array([w.scores for w in track.windows])
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    angry, calm = LABELS.index("angry"), LABELS.index("calm")
    assert (scores[:3, angry] > 0.99).all(), "loud windows"
    assert (scores[4:, calm] > 0.99).all(), "quiet windows"
    assert 0.2 < scores[3, calm] < 0.8, "the window straddling the change is mixed"


def test_batch_size_does_not_change_the_scores(loudness_model) -> None:
    audio = loud_then_quiet()
    one = TransformersEmotionEngine(loudness_model, device="cpu", batch_size=1).classify(audio)
    many = TransformersEmotionEngine(loudness_model, device="cpu", batch_size=16).classify(audio)
    assert np.allclose([w.scores for w in one.windows], [w.scores for w in many.windows], atol=1e-5)


def test_a_checkpoint_without_an_untrained_mark_counts_as_trained(loudness_model) -> None:
    engine = TransformersEmotionEngine(loudness_model, device="cpu")
    assert engine.engine.trained is True
    assert engine.engine.model == "loudness-classifier"


def test_a_random_checkpoint_is_marked_untrained_and_has_seven_emotions(tiny_ser) -> None:
    assert tiny_ser.engine.trained is False
    assert len(tiny_ser.labels) == 7 and "neutral" in tiny_ser.labels
    track = tiny_ser.classify(noise(4.0))
    assert all(len(w.scores) == 7 for w in track.windows)


def test_a_tenth_of_a_second_gets_one_window(tiny_ser) -> None:
    track = tiny_ser.classify(noise(0.1))
    assert [(w.start, w.end) for w in track.windows] == [(0.0, 0.1)]
    assert sum(track.windows[0].scores) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "n, expected",
    [
        (SAMPLE_RATE, [(0, SAMPLE_RATE)]),
        (3 * SAMPLE_RATE, [(0, 3 * SAMPLE_RATE)]),
        (4 * SAMPLE_RATE, [(0, 48000), (16000, 64000)]),
        (6 * SAMPLE_RATE, [(0, 48000), (24000, 72000), (48000, 96000)]),
    ],
)
def test_window_bounds_cover_the_audio_to_its_last_sample(n: int, expected) -> None:
    assert window_bounds(n, 3 * SAMPLE_RATE, SAMPLE_RATE * 3 // 2) == expected


def test_a_window_whose_scores_are_not_finite_fails_with_its_time_instead_of_reading_as_label_0(loudness_model):
    from workers.core.errors import PermanentError

    audio = loud_then_quiet()
    audio[int(7.6 * SAMPLE_RATE)] = np.nan  # what a float16 overflow inside the model makes of a window
    engine = TransformersEmotionEngine(loudness_model, device="cpu", window_seconds=3.0, hop_seconds=1.5)
    with pytest.raises(PermanentError, match=r"the first at 6\.00-9\.00 s, are not finite") as failed:
        engine.classify(audio)
    assert failed.value.code == "non_finite_scores"
