"""Benchmarks: real-time factors, STT ∥ SER overlap and peak memory (`python -m bench --help`)."""
