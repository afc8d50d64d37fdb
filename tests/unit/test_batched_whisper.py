"""Batched decoding of Whisper windows encoded one by one (workers.engines.batched_whisper)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio_factory import SAMPLES
from workers.engines.batched_whisper import BatchedWindows
from workers.processing.audio import SAMPLE_RATE, decode


def _model(path):
    import faster_whisper

    return faster_whisper.WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)


def _windows(*names: str) -> tuple[np.ndarray, list[dict]]:
    """The samples one after another, 1 s apart, each its own window."""
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    parts, clips, at = [], [], 0.0
    for name in names:
        samples = decode(SAMPLES / name, max_seconds=600).samples
        parts += [samples, pause]
        clips.append({"start": at, "end": at + len(samples) / SAMPLE_RATE})
        at += (len(samples) + len(pause)) / SAMPLE_RATE
    return np.concatenate(parts), clips


class _CountsEncoderPasses:
    """A WhisperModel whose encoder passes and their windows are counted."""

    def __init__(self, model) -> None:
        self._model, self.windows = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode(self, features):
        self.windows.append(len(features))
        return self._model.encode(features)


def _options(**kw) -> dict:
    return dict(batch_size=8, beam_size=5, word_timestamps=True, without_timestamps=True) | kw


def _texts(segments) -> list[str]:
    return [s.text.strip() for s in segments]


def test_windows_encoded_and_aligned_one_by_one_decode_as_faster_whispers_own_batch(fast_settings) -> None:
    import faster_whisper

    model = _model(fast_settings.stt_model_path)
    audio, clips = _windows("en_support_call.flac", "en_support_call.flac", "en_support_call.flac")
    counted = _CountsEncoderPasses(model)
    one_by_one, detected = BatchedWindows(counted, encode_batch=1, align_batch=1).transcribe(
        audio, clip_timestamps=clips, language=None, **_options())
    assert counted.windows == [1, 1, 1], "one encoder pass a window, none for the language"
    assert (detected.language, detected.language_probability) == ("en", 1.0), "tiny.en speaks English only"
    upstream, _ = faster_whisper.BatchedInferencePipeline(model).transcribe(
        audio, clip_timestamps=clips, language="en", **_options())
    assert _texts(one_by_one) == _texts(upstream)
    assert "damaged" in " ".join(_texts(one_by_one)).lower()
    for mine, theirs in zip(one_by_one, upstream):
        assert [w.word for w in mine.words] == [w.word for w in theirs.words]
        assert mine.words[0].start == pytest.approx(theirs.words[0].start, abs=0.05)
        assert clips[0]["start"] <= mine.start <= mine.end <= clips[-1]["end"] + 0.5


def test_a_batch_encoded_and_aligned_at_once_decodes_as_one_window_by_window(fast_settings) -> None:
    model = _model(fast_settings.stt_model_path)
    audio, clips = _windows("en_support_call.flac", "en_support_call.flac")
    counted = _CountsEncoderPasses(model)
    options = _options(without_timestamps=False)
    at_once, _ = BatchedWindows(counted, encode_batch=8, align_batch=8).transcribe(
        audio, clip_timestamps=clips, language="en", **options)
    assert counted.windows == [2]
    one_by_one, _ = BatchedWindows(model, encode_batch=1, align_batch=1).transcribe(
        audio, clip_timestamps=clips, language="en", **options)
    assert _texts(at_once) == _texts(one_by_one) and len(at_once) >= 2
    assert [[w.word for w in s.words] for s in at_once] == [[w.word for w in s.words] for s in one_by_one]


@pytest.mark.parametrize("first, language", [("de_termin.flac", "de"), ("es_reserva.flac", "es")])
def test_the_language_comes_from_the_first_window_of_the_first_batch(base_settings, first: str,
                                                                     language: str) -> None:
    counted = _CountsEncoderPasses(_model(base_settings.stt_model_path))
    audio, clips = _windows(first, "en_support_call.flac")
    segments, detected = BatchedWindows(counted, encode_batch=1, align_batch=4).transcribe(
        audio, clip_timestamps=clips, language=None, **_options(batch_size=1))
    assert detected.language == language and detected.language_probability > 0.5  # a majority; see test_stt
    assert counted.windows == [1, 1], "the language costs no encoder pass of its own"
    assert segments and all(s.words for s in segments)


def test_no_windows_decode_to_nothing(fast_settings) -> None:
    segments, detected = BatchedWindows(_model(fast_settings.stt_model_path), encode_batch=1, align_batch=4).transcribe(
        np.zeros(SAMPLE_RATE, dtype=np.float32), clip_timestamps=[], language="en", **_options())
    assert segments == [] and detected.language == "en"


def test_another_faster_whisper_release_is_refused_with_what_to_do() -> None:
    from faster_whisper.version import __version__

    from workers.core.errors import ConfigError
    from workers.engines.batched_whisper import WRITTEN_FOR, check_faster_whisper

    from workers.core.settings import REPO_ROOT

    assert __version__ == WRITTEN_FOR, "the installed faster-whisper is the one the batched engine was written for"
    assert f"faster-whisper=={WRITTEN_FOR}" in (REPO_ROOT / "requirements.txt").read_text().splitlines()
    check_faster_whisper(WRITTEN_FOR)
    with pytest.raises(ConfigError, match=r"faster-whisper 1\.3\.0 is installed.*STT_BATCH_SIZE=0"):
        check_faster_whisper("1.3.0")


class _RecordsFrames(_CountsEncoderPasses):
    """A WhisperModel whose encoder inputs' lengths (in mel frames) are recorded."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.frames: list[int] = []

    def encode(self, features):
        self.frames.append(int(features.shape[-1]))
        return super().encode(features)


@pytest.mark.parametrize("window, short, seen", [(3.7, 10.0, 10.0), (10.0, 10.0, 10.0), (10.2, 10.0, 30.0),
                                                 (25.0, 10.0, 30.0), (29.9, 10.0, 30.0), (3.7, 30.0, 30.0),
                                                 (3.7, 5.0, 5.0), (0.0, 10.0, 30.0)])
def test_the_encoder_sees_a_window_that_fits_the_short_length_as_that_and_any_other_as_30_s(window, short,
                                                                                           seen) -> None:
    from workers.engines.batched_whisper import encoder_seconds

    assert encoder_seconds(window, short) == seen


def _short_english_clips() -> list[tuple[np.ndarray, str]]:
    """Real 2-4 s English clips with what is said: RAVDESS's two sentences, TESS's "Say the word ..."."""
    from bench.corpus import RAVDESS_SENTENCES
    from tests.external_data import external

    ravdess = sorted(external("ravdess/audio").glob("*.flac"))[::56]
    tess = sorted(external("tess/wav").glob("*.wav"))[::25]
    return ([(decode(p, max_seconds=60).samples, RAVDESS_SENTENCES[p.name.split("-")[4]]) for p in ravdess]
            + [(decode(p, max_seconds=60).samples, f"Say the word {p.stem.split('_')[1]}.") for p in tess])


def test_short_windows_encoded_over_10_s_of_silence_lose_no_words_against_30_s(base_settings) -> None:
    """The encoder's pass over a 2-4 s clip padded to 10 s, not 30 s, costs a third; what Whisper base
    writes keeps its word error rate (measured on 80 RAVDESS and TESS clips: 0.050 against 0.054 and
    0.062 against 0.062; 0.059 against 0.067 on 22 English clips of 1-10 s)."""
    from bench.wer import normalise, word_error_rate

    model = _model(base_settings.stt_model_path)
    errors = {}
    for short in (30.0, 10.0):
        recorded = _RecordsFrames(model)
        windows = BatchedWindows(recorded, encode_batch=1, align_batch=4, short_window_seconds=short)
        errors[short] = 0.0
        for audio, reference in _short_english_clips():
            segments, _ = windows.transcribe(audio, clip_timestamps=[{"start": 0.0, "end": len(audio) / SAMPLE_RATE}],
                                             language="en", **_options())
            errors[short] += word_error_rate(reference, " ".join(_texts(segments))) * len(normalise(reference).split())
        assert set(recorded.frames) == {int(short * 100)}, "each clip encoded over the short length"
    assert errors[10.0] <= errors[30.0] + 1, errors


def test_a_batch_with_a_long_window_is_encoded_over_30_s_as_before(fast_settings) -> None:
    model = _model(fast_settings.stt_model_path)
    audio, clips = _windows("en_support_call.flac", "en_support_call.flac")
    recorded = _RecordsFrames(model)
    long_batch = [{"start": 0.0, "end": min(len(audio) / SAMPLE_RATE, 25.0)}, clips[0]]
    short, _ = BatchedWindows(recorded, encode_batch=1, align_batch=4, short_window_seconds=10.0).transcribe(
        audio, clip_timestamps=long_batch, language="en", **_options())
    assert recorded.frames == [3000, 3000]
    as_before, _ = BatchedWindows(model, encode_batch=1, align_batch=4).transcribe(
        audio, clip_timestamps=long_batch, language="en", **_options())
    assert _texts(short) == _texts(as_before)
