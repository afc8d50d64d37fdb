"""Where a model runs: the one place that turns a device setting (auto, cpu, cuda) into a device, and a CPU
into threads per engine worker.

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


def threads_per_worker(cpu_threads: int, workers: int, cores: int | None = None) -> int:
    """CPU threads for each of an engine's ``workers`` (calls it runs at once): ``cpu_threads``
    when set, else the cores this process may run on shared between the workers (at least one)."""
    if cpu_threads > 0:
        return cpu_threads
    import os

    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // max(1, workers))
