"""Which Whisper layers, pooling and head transfer to a corpus the head never heard?

    python -m bench.ser_features [--cache DIR] [--loudness mel-peak] [--quick]
    python -m bench.ser_features --speed 3     x real time of the emotion encoders on 3 min of speech

Encodes every clip of the four labelled corpora in ../shared/external (emodb, ravdess, tess, urdu;
1,323 clips) alone, in float32 on the CPU, through Whisper base's encoder block by block
(:class:`workers.engines.whisper_layers.WhisperLayerEncoder`: 3 s windows every 1.5 s, each window
alone), and caches each window's mean and standard deviation of the frames of every layer (0: the
input of the first block ... 6: the output, as CTranslate2 gives it) in ``--cache``: one pass over
64 min of audio, about 3 min on 2 idle cores.

Then, for each feature set (single layers, fixed averages of layers, concatenations; mean or
mean+std pooling) and each C of a multinomial logistic regression (standardised features, balanced
label weights), it scores each clip as the mean of its windows' probabilities and prints:

- ``loso``: leave-one-speaker-out over all 55 speakers, approximated by 11 folds of whole speakers
  (each corpus's speakers dealt round the folds), the unweighted accuracy over all clips;
- ``loso emodb`` / ``loso ravdess``: the same folds' figures on those corpora alone (the issue's
  "unseen actors of a seen corpus" are EmoDB and RAVDESS actors);
- ``loco``: leave-one-corpus-out, each corpus scored by a head trained on the other three, and
  their unweighted mean.

Streams and continuous audio are left out (``workers train-ser`` adds them): this ranks options
cheaply, it does not reproduce a model card. Choosing the best row by its ``loco`` figure makes
that figure optimistic; the last lines give a **nested** estimate: for each held-out corpus, the
option that is best on leave-one-corpus-out over the other three corpora only, and its figure on
the held-out corpus (the choice never saw the corpus it scores). ``--speaker-norm`` adds rows
where every speaker's windows are standardised by that speaker's own statistics, shrunk toward the
training statistics by the amount of speech (the rule ``workers.engines.ser_head`` would need at
inference; see the printed caveat).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings
from pathlib import Path

import numpy as np

from bench.corpus import EXTERNAL, require_external

CORPORA = ("emodb", "ravdess", "tess", "urdu")
LAYERS = tuple(range(7))  # whisper base: the input of block 1, then the output of each of its 6 blocks
LOSO_FOLDS = 11
WINDOW, HOP = 48_000, 24_000


def features(cache: Path, loudness: str) -> dict[str, np.ndarray]:
    """Per window: (layers, 2 x dims) mean and std of the frames, clip number, corpus, speaker,
    label number, clip seconds (cached)."""
    path = cache / f"ser-features-{loudness}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    from workers.core.settings import Settings
    from workers.engines.ser import window_bounds
    from workers.engines.whisper_encoder import ENCODER_STRIDE, MEL_HOP
    from workers.engines.whisper_layers import WhisperLayerEncoder
    from workers.processing.audio import SAMPLE_RATE
    from workers.setup.models import WHISPER_BASE
    from workers.training.ser_training import read_datasets

    dataset = read_datasets([EXTERNAL / c for c in CORPORA])
    encoder = WhisperLayerEncoder(Path(Settings.from_env({}).models.models_dir) / WHISPER_BASE)
    rows, clip, corpus, speaker, label, seconds = [], [], [], [], [], []
    started = time.monotonic()
    for n, c in enumerate(dataset.clips):
        bounds = window_bounds(len(c.audio), WINDOW, HOP)
        frames = encoder.frames([c.audio[a:b] for a, b in bounds], WINDOW, loudness, LAYERS)
        for j, (a, b) in enumerate(bounds):
            valid = max(1, -(-(b - a) // (MEL_HOP * ENCODER_STRIDE)))
            rows.append(np.stack([np.concatenate([frames[k][j, :valid].mean(0), frames[k][j, :valid].std(0)])
                                  for k in LAYERS]).astype(np.float32))
            clip.append(n)
            corpus.append(c.corpus)
            speaker.append(c.speaker)
            label.append(dataset.labels.index(c.label))
            seconds.append(len(c.audio) / SAMPLE_RATE)
        if n % 200 == 0:
            print(f"encoded {n}/{len(dataset.clips)} clips in {time.monotonic() - started:.0f} s", flush=True)
    found = {"x": np.stack(rows), "clip": np.array(clip), "corpus": np.array(corpus), "speaker": np.array(speaker),
             "y": np.array(label), "seconds": np.array(seconds), "labels": np.array(dataset.labels)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **found)
    print(f"cached {len(rows)} windows of {len(dataset.clips)} clips in {path} "
          f"({time.monotonic() - started:.0f} s)", flush=True)
    return found


def feature_set(data: dict[str, np.ndarray], layers: tuple[int, ...], mix: str, pooling: str) -> np.ndarray:
    """The rows a head with these options would see (as WhisperLayerEncoder.pooled makes them)."""
    half = data["x"].shape[2] // 2
    parts = data["x"][:, list(layers)] if pooling == "mean+std" else data["x"][:, list(layers), :half]
    if mix == "mean":
        return parts.mean(axis=1)
    return parts.reshape(len(parts), -1)


def speaker_normalised(x: np.ndarray, speaker: np.ndarray, seconds_per_window: np.ndarray,
                       prior_seconds: float) -> np.ndarray:
    """Each speaker's rows standardised by their own mean, shrunk toward the global mean by
    ``prior_seconds / (prior_seconds + their speech)``: a lone 3 s clip stays nearly as it is."""
    out = x.astype(np.float64).copy()
    centre = x.mean(axis=0)
    for s in np.unique(speaker):
        mine = speaker == s
        amount = seconds_per_window[mine].sum()
        trust = amount / (amount + prior_seconds)
        out[mine] -= trust * (x[mine].mean(axis=0) - centre)
    return out


def unweighted(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[truth == k] == k) for k in np.unique(truth)]))


def clip_predictions(probs: np.ndarray, clip: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clips, inverse = np.unique(clip, return_inverse=True)
    summed = np.zeros((len(clips), probs.shape[1]))
    np.add.at(summed, inverse, probs)
    truth = np.zeros(len(clips), dtype=int)
    truth[inverse] = y
    return truth, summed.argmax(1)


def fit_predict(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from workers.training.ser_training import sample_weights

    scaler = StandardScaler().fit(x[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(C=c, max_iter=2000, tol=1e-4).fit(
            scaler.transform(x[train]), y[train], sample_weight=sample_weights(y[train]))
    return model.predict_proba(scaler.transform(x[test]))


def loco(x: np.ndarray, data: dict[str, np.ndarray], corpora: tuple[str, ...], c: float) -> dict[str, float]:
    found = {}
    for held in corpora:
        train = np.isin(data["corpus"], [k for k in corpora if k != held])
        test = data["corpus"] == held
        found[held] = unweighted(*clip_predictions(fit_predict(x, data["y"], train, test, c), data["clip"][test],
                                                   data["y"][test]))
    return found


def speaker_folds(data: dict[str, np.ndarray]) -> np.ndarray:
    """A fold number per window: each corpus's speakers dealt round LOSO_FOLDS folds in sorted order."""
    fold_of = {}
    for corpus in CORPORA:
        for n, s in enumerate(sorted(set(data["speaker"][data["corpus"] == corpus]))):
            fold_of[s] = (n + CORPORA.index(corpus) * 3) % LOSO_FOLDS
    return np.array([fold_of[s] for s in data["speaker"]])


def loso(x: np.ndarray, data: dict[str, np.ndarray], folds: np.ndarray, c: float) -> dict[str, float]:
    probs = np.zeros((len(x), len(data["labels"])))
    for k in range(LOSO_FOLDS):
        test = folds == k
        probs[test] = fit_predict(x, data["y"], ~test, test, c)
    found = {"all": unweighted(*clip_predictions(probs, data["clip"], data["y"]))}
    for corpus in ("emodb", "ravdess"):
        mine = data["corpus"] == corpus
        found[corpus] = unweighted(*clip_predictions(probs[mine], data["clip"][mine], data["y"][mine]))
    return found


QUICK = [((6,), "concat"), ((3,), "concat"), ((4,), "concat")]
FULL = [((k,), "concat") for k in LAYERS] + [
    ((2, 3, 4), "mean"), ((1, 2, 3, 4, 5, 6), "mean"), ((3, 4, 5), "mean"), ((0, 1, 2, 3, 4, 5, 6), "mean"),
    ((3, 6), "concat"), ((2, 4), "concat"), ((2, 4, 6), "concat")]


def speed(layers: tuple[int, ...], minutes: float = 3.0) -> None:
    """Seconds of audio per second of the emotion part (encoder + head) on generated speech-like
    audio: CTranslate2 int8 at the last layer (the engine's default before layers) against the
    block-by-block float32 encoder at ``layers``."""
    from bench.corpus import english_speech
    from workers.core.settings import Settings
    from workers.engines.whisper_encoder import WhisperEncoder
    from workers.engines.whisper_layers import WhisperLayerEncoder
    from workers.setup.models import WHISPER_BASE

    path = Path(Settings.from_env({}).models.models_dir) / WHISPER_BASE
    audio, _ = english_speech(repeats=1)
    audio = np.tile(audio, int(np.ceil(minutes * 60 * 16000 / len(audio))))[: int(minutes * 60 * 16000)]
    seconds = len(audio) / 16000
    for name, encoder in (("last layer, CTranslate2 int8", WhisperEncoder(path, device="cpu")),
                          ("last layer, CTranslate2 float32", WhisperEncoder(path, device="cpu",
                                                                              compute_type="float32")),
                          (f"layers {','.join(map(str, layers))}, torch float32",
                           WhisperLayerEncoder(path, layers=layers))):
        encoder.pooled(audio[:48000], WINDOW, HOP, loudness="mel-peak")  # warm up
        started = time.perf_counter()
        encoder.pooled(audio, WINDOW, HOP, loudness="mel-peak")
        elapsed = time.perf_counter() - started
        print(f"{name:<34} {seconds:.0f} s of audio in {elapsed:.1f} s: {seconds / elapsed:.1f}x real time",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ser_features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "speech-pipeline")
    parser.add_argument("--loudness", default="mel-peak", choices=("none", "mel-peak"))
    parser.add_argument("--c", default="0.003,0.01,0.03", help="values of C to try [%(default)s]")
    parser.add_argument("--pooling", default="mean,mean+std", help="poolings to try [%(default)s]")
    parser.add_argument("--quick", action="store_true", help="three layer sets only")
    parser.add_argument("--sets", default="", metavar="K[,K][;avg:K,K]",
                        help="these layer sets only, e.g. '3;4;avg:2,3,4;2,4' (a,b: side by side; avg: averaged)")
    parser.add_argument("--no-loso", action="store_true", help="leave-one-corpus-out only (4x fewer fits)")
    parser.add_argument("--nested", action="store_true", help="also the nested estimate (4x the fits)")
    parser.add_argument("--speaker-norm", default="", help="prior seconds of the speaker normalisation to try, "
                        "e.g. 30,1e9 (1e9: never normalise; 0: by the speaker's full statistics)")
    parser.add_argument("--speed", default="", metavar="K[,K]",
                        help="only time the emotion encoders (3 min of speech) at these layers, e.g. 3")
    args = parser.parse_args()
    require_external()
    if args.speed:
        os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
        speed(tuple(int(k) for k in args.speed.split(",")))
        return
    data = features(args.cache, args.loudness)
    folds = speaker_folds(data)
    sets = QUICK if args.quick else FULL
    if args.sets:
        sets = [(tuple(int(k) for k in part.removeprefix("avg:").split(",")),
                 "mean" if part.startswith("avg:") else "concat") for part in args.sets.split(";") if part]
    priors = [float(v) for v in args.speaker_norm.split(",") if v] or [None]
    grid = list(itertools.product(sets, args.pooling.split(","), priors, [float(v) for v in args.c.split(",")]))
    outer, inner = {}, {}
    print(f"loudness {args.loudness}; clips scored alone; loso: {LOSO_FOLDS} folds of whole speakers")
    print(f"{'layers':<16}{'pooling':<10}{'spk-norm':>9}{'C':>7}{'loso':>7}{'emodb':>7}{'ravdess':>8}  |"
          + "".join(f"{c:>8}" for c in CORPORA) + "  loco")
    for option in grid:
        (layers, mix), pooling, prior, c = option
        x = feature_set(data, layers, mix, pooling)
        if prior is not None:
            per_window = np.minimum(data["seconds"], HOP / 16000)  # each window adds its hop of speech
            x = speaker_normalised(x, data["speaker"], per_window, prior)
        name = ("avg " if mix == "mean" and len(layers) > 1 else "") + "+".join(map(str, layers))
        s = {"all": float("nan"), "emodb": float("nan"), "ravdess": float("nan")} if args.no_loso else loso(
            x, data, folds, c)
        outer[option] = loco(x, data, CORPORA, c)
        print(f"{name:<16}{pooling:<10}{'-' if prior is None else f'{prior:g}':>9}{c:>7g}{s['all']:>7.3f}"
              f"{s['emodb']:>7.3f}{s['ravdess']:>8.3f}  |" + "".join(f"{outer[option][k]:>8.3f}" for k in CORPORA)
              + f"  {np.mean(list(outer[option].values())):.3f}", flush=True)
        if args.nested:
            inner[option] = {held: float(np.mean(list(loco(x, data, tuple(k for k in CORPORA if k != held),
                                                           c).values()))) for held in CORPORA}
    best = max(grid, key=lambda o: np.mean(list(outer[o].values())))
    print(f"best loco row (optimistic: chosen on the figure it shows): {best} "
          f"{np.mean(list(outer[best].values())):.3f}")
    if args.nested:
        chosen = {held: max(grid, key=lambda o: inner[o][held]) for held in CORPORA}
        for held, option in chosen.items():
            print(f"nested: {held} scored {outer[option][held]:.3f} with {option}, chosen on the other three")
        print(f"nested loco average {np.mean([outer[o][h] for h, o in chosen.items()]):.3f}")
    if args.speaker_norm:
        print("speaker-norm: every speaker of these corpora holds all their clips; a call holds one speaker's "
              "minutes; a judged file of one clip holds ~3 s (prior seconds decide how little it moves)")


if __name__ == "__main__":
    main()
