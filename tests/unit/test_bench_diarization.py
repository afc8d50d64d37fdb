"""The diarization bench scores with pyannote.metrics, overlap included, against references it does not derive
from a VAD."""

from __future__ import annotations

import numpy as np
import pytest

from bench.diarization import pooled, read_rttm, score, trimmed
from workers.processing.audio import SAMPLE_RATE

REFERENCE = [(0.0, 4.0, "A"), (3.0, 6.0, "B"), (7.0, 9.0, "A")]  # 1 s where both talk


def test_a_hypothesis_equal_to_the_reference_scores_zero_under_any_naming() -> None:
    renamed = [(a, b, {"A": "S2", "B": "S1"}[w]) for a, b, w in REFERENCE]
    s = score(REFERENCE, renamed, 10.0)
    assert s.der == pytest.approx(0.0) and s.der_no_collar == pytest.approx(0.0) and s.jer == pytest.approx(0.0)
    assert (s.speakers_found, s.speakers_true) == (2, 2)


def test_overlapped_speech_is_scored_so_one_speaker_at_a_time_misses_it() -> None:
    one_at_a_time = [(0.0, 3.5, "A"), (3.5, 6.0, "B"), (7.0, 9.0, "A")]
    s = score(REFERENCE, one_at_a_time, 10.0)
    assert s.total_no_collar == pytest.approx(9.0)  # 4 + 3 + 2 s: the overlapped second counts twice
    assert s.errors_no_collar == pytest.approx(1.0, abs=0.02)  # one of the two voices missed for that second
    assert s.der < s.der_no_collar  # the ±0.25 s collar forgives the edges


def test_pooled_scores_add_seconds_and_count_files_with_the_right_speaker_count() -> None:
    good, bad = score(REFERENCE, REFERENCE, 10.0), score(REFERENCE, [(0.0, 9.0, "X")], 10.0)
    p = pooled([good, bad])
    assert p.total == pytest.approx(good.total + bad.total)
    assert p.der == pytest.approx((bad.missed + bad.false_alarm + bad.confusion) / p.total)
    assert (p.speakers_found, p.speakers_true) == (1, 2)


def test_an_rttm_file_is_read_as_turns(tmp_path) -> None:
    rttm = tmp_path / "x.rttm"
    rttm.write_text("SPEAKER x 1 3.168 0.800 <NA> <NA> MEO069 <NA> <NA>\nSPEAKER x 1 5.5 1.0 <NA> <NA> B <NA> <NA>\n")
    assert read_rttm(rttm) == [(3.168, pytest.approx(3.968), "MEO069"), (5.5, 6.5, "B")]


def test_a_clip_is_trimmed_to_its_own_loud_extent() -> None:
    tone = 0.1 * np.sin(2 * np.pi * 200 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2), tone, np.zeros(SAMPLE_RATE)]).astype(np.float32)
    assert len(trimmed(audio)) / SAMPLE_RATE == pytest.approx(1.0, abs=0.02)


def test_turns_with_a_negative_pause_overlap_in_the_reference_and_add_up_in_the_audio(monkeypatch) -> None:
    from bench import diarization

    tone = (0.1 * np.sin(2 * np.pi * 200 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    monkeypatch.setattr(diarization, "clip", lambda name, k: tone)
    audio, reference = diarization.assemble("A B", -0.25)
    assert len(audio) / SAMPLE_RATE == pytest.approx(1.75, abs=0.02)
    (a0, a1, _), (b0, b1, _) = reference
    assert a1 - b0 == pytest.approx(0.25, abs=0.02) and b1 == pytest.approx(1.75, abs=0.02)
    assert np.max(np.abs(audio[int(0.8 * SAMPLE_RATE):int(0.95 * SAMPLE_RATE)])) > 0.15  # both at once


def test_a_phone_line_keeps_speech_band_tones_and_drops_what_lies_outside() -> None:
    from bench.diarization import telephone

    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    inside, outside = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 6000 * t)
    level = lambda x: float(np.sqrt(np.mean(x[SAMPLE_RATE // 2:] ** 2)))  # noqa: E731
    assert level(telephone((0.1 * inside).astype(np.float32))) > 0.05
    assert level(telephone((0.1 * outside).astype(np.float32))) < 0.005
