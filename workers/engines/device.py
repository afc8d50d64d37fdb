"""Where a model runs: the one place that turns a device setting (auto, cpu, cuda) into a device.

``auto`` means CUDA when the runtime of the engine's library sees a device, else the CPU: CTranslate2 (faster-whisper,
the whisper-head encoder) and torch (openai-whisper, transformers, the diarizer) each have their own CUDA runtime, so
each asks its own."""

from __future__ import annotations


def ctranslate2_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # noqa: BLE001 - no CUDA runtime means CPU
        return "cpu"


def torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
