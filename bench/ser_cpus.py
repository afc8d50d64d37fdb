"""Do the emotion head's features come out the same on another CPU? float32 against int8.

    python -m bench.ser_cpus [--every 67]

CTranslate2 picks its kernels by CPU (instruction set, vendor; MKL or oneDNN), and its int8
kernels round differently from one to the next, so a head's figures computed on int8 features do
not come back on another machine. ``workers train-ser`` therefore computes the features of
training and evaluation in float32 on the CPU; the engine keeps int8 (CPU) for speed. This bench
encodes a sample of the four emotion corpora (every N-th clip of each ``labels.csv`` in
../shared/external) in a child process per setting, the default and ``CT2_FORCE_CPU_ISA=GENERIC``,
``CT2_FORCE_CPU_ISA=AVX2`` and ``CT2_USE_MKL=0``, each in float32 and int8, with the default head's
pooling and loudness, and prints the largest relative difference of the pooled features
(|a - b| / |a| per window) against the default, and float32 against int8 on each setting, with the
share of windows whose top label under the default head differs. A CPU without AVX2 fails that
setting (named in the output).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.corpus import EXTERNAL, require_external

CORPORA = ("emodb", "ravdess", "tess", "urdu")
SETTINGS = {"default": {}, "GENERIC": {"CT2_FORCE_CPU_ISA": "GENERIC"}, "AVX2": {"CT2_FORCE_CPU_ISA": "AVX2"},
            "no MKL": {"CT2_USE_MKL": "0"}}
COMPUTE = ("float32", "int8")


def encode(every: int, out: Path) -> None:
    """In the child: the sample's features in each compute type, saved to ``out``."""
    from workers.composition import Root
    from workers.core.settings import Settings
    from workers.engines.whisper_encoder import WhisperEncoder
    from workers.processing.audio import SAMPLE_RATE, decode

    engine = Root(Settings.from_env({})).ser_engine()
    head, path = engine.head, engine.encoder.model_path
    clips = [decode(EXTERNAL / c / row["file"], max_seconds=60).samples for c in CORPORA
             for row in list(csv.DictReader((EXTERNAL / c / "labels.csv").open()))[::every]]
    window, hop = int(head.window_seconds * SAMPLE_RATE), int(head.hop_seconds * SAMPLE_RATE)
    found = {}
    for compute in COMPUTE:
        encoder = WhisperEncoder(path, device="cpu", compute_type=compute)
        found[compute] = np.concatenate([encoder.pooled(a, window, hop, pooling=head.pooling,
                                                        loudness=head.loudness)[1] for a in clips])
    np.savez(out, **found)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ser_cpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=67, help="every N-th clip of each corpus [%(default)s]")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return encode(args.every, args.child)
    require_external()
    from workers.composition import Root
    from workers.core.settings import Settings

    head = Root(Settings.from_env({})).ser_engine().head
    features: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in SETTINGS.items():
            out = Path(tmp) / f"{len(features)}.npz"
            done = subprocess.run([sys.executable, "-m", "bench.ser_cpus", "--every", str(args.every), "--child",
                                   str(out)], env={**os.environ, **env}, capture_output=True, text=True)
            if done.returncode:
                why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
                print(f"{name}: failed ({why})")
                continue
            with np.load(out) as data:
                features[name] = {c: data[c] for c in COMPUTE}
    base = features["default"]
    print(f"{len(base['float32'])} windows of {', '.join(CORPORA)} (every {args.every}th clip), head {head.head_id}")
    for name, found in features.items():
        if name != "default":
            float32 = relative(base['float32'], found['float32'])
            print(f"{name:<8} vs default: float32 max relative difference {float32:.1e}, "
                  f"int8 {relative(base['int8'], found['int8']):.1e}")
    for name, found in features.items():
        a, b = found["float32"], found["int8"]
        flips = np.mean(head.probabilities(a).argmax(1) != head.probabilities(b).argmax(1))
        print(f"{name:<8} float32 vs int8: max relative difference {relative(a, b):.3f}, top label differs on "
              f"{flips:.1%} of windows")


if __name__ == "__main__":
    main()
