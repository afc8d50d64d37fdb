"""Which feature options transfer to a corpus the head never heard? Leave-one-corpus-out on clips alone.

    python -m bench.ser_options [--cache DIR] [--c 0.01,0.03,0.3]

Encodes every clip of the four labelled corpora in ../shared/external (emodb, ravdess, tess, urdu)
alone, in float32 on the CPU, once with Whisper's plain log-mel and once with ``mel-peak`` loudness
normalisation, pooled as mean+std (whose first half is the plain mean), and caches the features
in ``--cache`` (two passes over 62 min of audio: about 10 min on 2 idle cores). Then, for every
combination of loudness (none, mel-peak), pooling (mean, mean+std), balance (labels, corpora) and
C, it trains a logistic regression on three corpora and scores the fourth (each clip: the mean of
its windows' probabilities), and prints each corpus's unweighted accuracy and their average.

Streams and continuous audio are left out (``workers train-ser`` adds them): this ranks options
cheaply, it does not reproduce the card's figures. ``--nested`` also picks, for each held-out
corpus, the option that is best on leave-one-corpus-out over the other three only, and reports
that option's figure on the held-out corpus: an estimate that did not see the corpus it scores
when the option was chosen (the plain grid's best average did).
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from pathlib import Path

import numpy as np

from bench.corpus import EXTERNAL, require_external

CORPORA = ("emodb", "ravdess", "tess", "urdu")
LOUDNESS = ("none", "mel-peak")


def features(cache: Path, loudness: str) -> dict[str, np.ndarray]:
    """Per window: mean+std features, clip number, corpus, label number (cached)."""
    path = cache / f"ser-options-{loudness}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    from workers.core.settings import Settings
    from workers.setup.models import WHISPER_BASE
    from workers.training.ser_training import read_datasets
    from workers.engines.whisper_encoder import WhisperEncoder
    from workers.processing.audio import SAMPLE_RATE

    dataset = read_datasets([EXTERNAL / c for c in CORPORA])
    encoder = WhisperEncoder(Path(Settings.from_env({}).models.models_dir) / WHISPER_BASE, device="cpu",
                             compute_type="float32")
    rows, clip, corpus, label = [], [], [], []
    for n, c in enumerate(dataset.clips):
        x = encoder.pooled(c.audio, 3 * SAMPLE_RATE, SAMPLE_RATE * 3 // 2, pooling="mean+std", loudness=loudness)[1]
        rows.append(x)
        clip += [n] * len(x)
        corpus += [c.corpus] * len(x)
        label += [dataset.labels.index(c.label)] * len(x)
    found = {"x": np.concatenate(rows), "clip": np.array(clip), "corpus": np.array(corpus), "y": np.array(label)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **found)
    return found


def loco(data: dict[str, np.ndarray], corpora: tuple[str, ...], pooling: str, balance: str,
         c: float) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from workers.training.ser_training import sample_weights

    x = data["x"] if pooling == "mean+std" else data["x"][:, : data["x"].shape[1] // 2]
    found = {}
    for held in corpora:
        train = np.isin(data["corpus"], [k for k in corpora if k != held])
        test = data["corpus"] == held
        scaler = StandardScaler().fit(x[train])
        weights = sample_weights(data["y"][train], data["corpus"][train] if balance == "corpora" else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x[train]), data["y"][train],
                                                               sample_weight=weights)
        probs = model.predict_proba(scaler.transform(x[test]))
        clips, inverse = np.unique(data["clip"][test], return_inverse=True)
        summed = np.zeros((len(clips), probs.shape[1]))
        np.add.at(summed, inverse, probs)
        truth = np.zeros(len(clips), dtype=int)
        truth[inverse] = data["y"][test]
        predicted = summed.argmax(1)
        found[held] = float(np.mean([np.mean(predicted[truth == k] == k) for k in np.unique(truth)]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ser_options", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "speech-pipeline")
    parser.add_argument("--c", default="0.01,0.03,0.3", help="values of C to try [%(default)s]")
    parser.add_argument("--nested", action="store_true", help="also the nested estimate (4x the fits)")
    args = parser.parse_args()
    require_external()
    grid = list(itertools.product(LOUDNESS, ("mean", "mean+std"), ("labels", "corpora"),
                                  [float(v) for v in args.c.split(",")]))
    data = {loudness: features(args.cache, loudness) for loudness in LOUDNESS}
    outer, inner = {}, {}
    print(f"{'loudness':<10}{'pooling':<10}{'balance':<9}{'C':>6}  " + "".join(f"{c:>9}" for c in CORPORA)
          + "  average")
    for option in grid:
        loudness, pooling, balance, c = option
        outer[option] = loco(data[loudness], CORPORA, pooling, balance, c)
        print(f"{loudness:<10}{pooling:<10}{balance:<9}{c:>6g}  "
              + "".join(f"{outer[option][k]:>9.3f}" for k in CORPORA)
              + f"  {np.mean(list(outer[option].values())):.3f}", flush=True)
        if args.nested:
            inner[option] = {held: float(np.mean(list(loco(data[loudness], tuple(k for k in CORPORA if k != held),
                                                            pooling, balance, c).values()))) for held in CORPORA}
    if args.nested:
        chosen = {held: max(grid, key=lambda o: inner[o][held]) for held in CORPORA}
        for held, option in chosen.items():
            print(f"nested: {held} scored {outer[option][held]:.3f} with {option}, chosen on the other three")
        print(f"nested average {np.mean([outer[o][h] for h, o in chosen.items()]):.3f}")


if __name__ == "__main__":
    main()
