"""The engines on CUDA: float16 Whisper and the SER model give what they give on the CPU.

Marked ``gpu``: these run only where a CUDA device is visible (the GPU worker image, or a lent
GPU machine) and skip with the reason elsewhere; CI never needs a GPU. The CPU side of the same
automatic choice is checked without one.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.wer import word_error_rate
from tests.audio_factory import SAMPLES
from workers.composition import Root
from workers.processing.audio import decode
from workers.engines.device import ctranslate2_device

from .test_stt import EN_REFERENCE



@pytest.fixture(scope="module")
def cuda() -> bool:
    """Whether CTranslate2 sees a CUDA device: asked when a test runs, not when pytest imports."""
    return ctranslate2_device("auto") == "cuda"


@pytest.fixture
def needs_cuda(cuda: bool) -> None:
    if not cuda:
        pytest.skip("no CUDA device visible to CTranslate2")


def test_auto_device_means_int8_whisper_and_cpu_ser_without_a_gpu(tiny_stt, tiny_ser, cuda) -> None:
    if cuda:
        pytest.skip("a CUDA device is visible; the gpu tests cover this machine")
    assert (tiny_stt.device, tiny_stt.compute_type, tiny_ser.device) == ("cpu", "int8", "cpu")


@pytest.mark.gpu
@pytest.mark.usefixtures("needs_cuda")
def test_whisper_on_cuda_is_float16_and_transcribes_the_sample(fast_settings) -> None:
    stt = Root(fast_settings).stt_engine()
    assert (stt.device, stt.compute_type) == ("cuda", "float16")
    t = stt.transcribe(decode(SAMPLES / "en_support_call.flac", max_seconds=600).samples)
    assert word_error_rate(EN_REFERENCE, " ".join(s.text for s in t.segments)) <= 0.15
    assert t.language == "en"


@pytest.mark.gpu
def test_transformers_ser_on_cuda_scores_like_the_cpu(untrained_settings) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device (or is the CPU build)")
    audio = decode(SAMPLES / "en_support_call.flac", max_seconds=600).samples
    ser = Root(untrained_settings).ser_engine()
    assert ser.device == "cuda"
    on_gpu = ser.classify(audio)
    on_cpu = Root(untrained_settings.replace(ser_device="cpu")).ser_engine().classify(audio)
    assert [(w.start, w.end) for w in on_gpu.windows] == [(w.start, w.end) for w in on_cpu.windows]
    gpu, cpu = (np.array([w.scores for w in t.windows]) for t in (on_gpu, on_cpu))
    assert np.allclose(gpu, cpu, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.usefixtures("needs_cuda")
def test_whisper_head_on_cuda_is_float16_and_agrees_with_int8_on_the_cpu(fast_settings) -> None:
    audio = decode(SAMPLES / "en_support_call.flac", max_seconds=600).samples
    ser = Root(fast_settings).ser_engine()  # the head's encoder check passes on float16 too
    assert (ser.device, ser.encoder.compute_type) == ("cuda", "float16")
    on_gpu = np.array([w.scores for w in ser.classify(audio).windows])
    cpu_engine = Root(fast_settings.replace(ser_device="cpu")).ser_engine()
    on_cpu = np.array([w.scores for w in cpu_engine.classify(audio).windows])
    assert np.abs(on_gpu - on_cpu).max() < 0.1
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).mean() >= 0.9


@pytest.mark.gpu
def test_the_diarizer_on_cuda_finds_what_it_finds_on_the_cpu() -> None:
    import torch

    from bench.diarization import score
    from tests.external_data import external
    from workers.engines.diarization import SpeakerDiarizer

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device (or is the CPU build)")
    audio = decode(external("ami-excerpts/ami-EN2009b-0-30s.flac"), max_seconds=600).samples
    on_gpu = SpeakerDiarizer(device="cuda")
    assert on_gpu.device == "cuda"
    gpu = [(t.start, t.end, t.speaker) for t in on_gpu.turns(audio)]
    cpu = [(t.start, t.end, t.speaker) for t in SpeakerDiarizer(device="cpu").turns(audio)]
    assert len({s for *_, s in gpu}) == len({s for *_, s in cpu})
    assert score(cpu, gpu, len(audio) / 16000).der_no_collar < 0.05
