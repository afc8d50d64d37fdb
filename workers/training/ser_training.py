"""Train and evaluate a ``whisper-head`` emotion head on labelled recordings (``workers train-ser``).

Features come from :meth:`WhisperEncoder.pooled`, the call the engine makes at inference, over
two kinds of material per speaker:

- each clip alone (what an isolated utterance gives);
- **streams**: a speaker's clips of one label joined with short pauses, cut into the engine's
  sliding windows, so the head also learns from windows that hold the end of one utterance,
  a pause and the start of the next, as windows over a real recording do. Measured on Berlin
  EmoDB, this lifts the leave-one-speaker-out accuracy on continuous audio from 0.67 to 0.85.

Several labelled folders (corpora) may be given: their speakers are namespaced
``CORPUS/SPEAKER`` and, besides leave-one-speaker-out, each corpus is scored by a head trained on
the others only (**leave-one-corpus-out**): a user's recordings are always a new corpus.

Evaluation is speaker-independent only: leave-one-speaker-out, leave-one-corpus-out with several
corpora, and with one corpus a fixed split that holds out named speakers. Each is scored twice:
per clip (the mean of the clip's windows), and on **continuous** audio (each held-out speaker's
clips of every label, shuffled and joined with 0.5 s pauses, windowed, and each clip given the
overlap-weighted mean of the windows over it, exactly as the joiner gives a transcript segment
its emotion).

Features are computed in float32 on the CPU by default (``compute_type``): CTranslate2's int8
kernels differ from one CPU to another (vendor, instruction set, MKL or oneDNN), float32 agrees
to rounding, so the card's figures come back on another machine.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from workers.processing.audio import SAMPLE_RATE, decode
from workers.core.contracts import EmotionWindow
from workers.engines.ser_head import SerHead
from workers.training.calibration import Calibration, HeldOut, calibrate
from workers.engines.whisper_encoder import WhisperEncoder
from workers.engines.whisper_layers import WhisperLayerEncoder
from workers.core.errors import ConfigError, PermanentError
from workers.processing.join import window_weights

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("file", "label", "speaker")
MIN_SPEAKERS = 2
CONTINUOUS_GAP_SECONDS = 0.5
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm")


@dataclass(frozen=True)
class TrainOptions:
    window_seconds: float = 3.0
    hop_seconds: float = 1.5
    c: float = 0.3  # inverse L2 strength of the logistic regression
    streams: bool = True
    stream_gap_seconds: tuple[float, float] = (0.2, 0.8)
    min_clips_per_label: int = 5
    seed: int = 0
    test_speakers: tuple[str, ...] = ()  # the fixed split; empty: the last quarter in sorted order
    pooling: str = "mean"  # or "mean+std" (whisper_encoder.POOLINGS)
    loudness: str = "none"  # or "mel-peak" (whisper_encoder.LOUDNESS)
    balance: str = "labels"  # "labels": each label weighs the same; "corpora": each (corpus, label) does
    compute_type: str = "float32"  # the encoder's, for the features of training and evaluation
    layers: tuple[int, ...] = ()  # encoder layers pooled (whisper_layers); (): the last, through CTranslate2
    layer_mix: str = "concat"  # or "mean": the layers' pooled frames averaged (whisper_layers.LAYER_MIXES)


BALANCES = ("labels", "corpora")


@dataclass(frozen=True)
class Clip:
    file: str
    label: str
    speaker: str
    audio: np.ndarray = field(repr=False)
    corpus: str = ""  # the folder's name; "" for a folder added with --add


@dataclass
class SpeakerFeatures:
    """Everything the encoder made of one speaker's clips."""

    clip_windows: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (clip index, features)
    stream_windows: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (label, features)
    continuous: list[tuple[list[tuple[int, float, float]], list[tuple[float, float]], np.ndarray]] = field(
        default_factory=list)  # (clip spans in s, window bounds in s, features)


@dataclass(frozen=True)
class Scores:
    unweighted_accuracy: float
    weighted_accuracy: float
    recall: dict[str, float]
    confusion: list[list[int]]  # rows: true label, columns: predicted, in label order
    clips: int

    @classmethod
    def of(cls, truth: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> "Scores":
        truth_a, pred_a = np.asarray(truth), np.asarray(predicted)
        confusion = np.zeros((len(labels), len(labels)), dtype=int)
        np.add.at(confusion, (truth_a, pred_a), 1)
        present = [k for k in range(len(labels)) if confusion[k].sum()]
        recall = {labels[k]: round(float(confusion[k, k] / confusion[k].sum()), 4) for k in present}
        return cls(round(float(np.mean(list(recall.values()))), 4), round(float(np.mean(truth_a == pred_a)), 4),
                   recall, confusion.tolist(), len(truth_a))

    @classmethod
    def average(cls, parts: Sequence["Scores"], labels: Sequence[str]) -> "Scores":
        """The unweighted mean of ``parts`` (each corpus counts the same, whatever its size); the
        confusion and the clip count are their sums."""
        recall = {label: round(float(np.mean([p.recall[label] for p in parts if label in p.recall])), 4)
                  for label in labels if any(label in p.recall for p in parts)}
        return cls(round(float(np.mean([p.unweighted_accuracy for p in parts])), 4),
                   round(float(np.mean([p.weighted_accuracy for p in parts])), 4), recall,
                   np.sum([p.confusion for p in parts], axis=0).tolist(), sum(p.clips for p in parts))


@dataclass(frozen=True)
class Evaluation:
    name: str  # "leave-one-speaker-out" or "fixed split: test speakers …"
    test_speakers: tuple[str, ...]
    clips: Scores
    continuous: Scores


@dataclass(frozen=True)
class Dataset:
    clips: list[Clip]
    labels: tuple[str, ...]
    speakers: tuple[str, ...]
    added: tuple[str, ...] = ()  # speakers that are folders added with one label (add_folder)
    corpora: tuple[str, ...] = ()  # the labelled folders' names, in the order given

    @property
    def main_speakers(self) -> tuple[str, ...]:
        return tuple(s for s in self.speakers if s not in self.added)

    def speakers_of(self, corpus: str) -> tuple[str, ...]:
        return tuple(sorted({c.speaker for c in self.clips if c.corpus == corpus}))


def _scarce(clips: Sequence[Clip], labels: Sequence[str], least: int) -> dict[str, int]:
    """The labels with fewer than ``least`` of ``clips`` (a fold's training side), and how many they have."""
    counts = {label: sum(c.label == label for c in clips) for label in labels}
    return {label: n for label, n in counts.items() if n < least}


def read_datasets(folders: Sequence[Path], *, min_clips_per_label: int = 5,
                  labels: Sequence[str] = ()) -> Dataset:
    """One data set from one or several labelled folders. With several, each folder is a corpus
    and its speakers are named ``FOLDER/SPEAKER``; every folder must carry the same labels (or
    only ``labels`` where given), and leaving any one corpus out must leave at least
    ``min_clips_per_label`` clips of every label to train on."""
    names = [folder.resolve().name for folder in folders]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two labelled folders are named {', '.join(twice)}: their speakers would mix; "
                          "give each corpus a folder of its own name")
    parts = [read_dataset(folder, min_clips_per_label=min_clips_per_label,
                          corpus=name if len(folders) > 1 else "", known_labels=labels)
             for folder, name in zip(folders, names)]
    if len(parts) == 1:
        only = parts[0]
        return Dataset([_in_corpus(c, names[0]) for c in only.clips], only.labels, only.speakers, corpora=(names[0],))
    union = tuple(sorted({label for part in parts for label in part.labels}))
    for folder, part in zip(folders, parts):
        lacking = [label for label in union if label not in part.labels]
        if lacking:
            raise ConfigError(f"{folder / LABELS_FILE} has no clip of {', '.join(map(repr, lacking))}, which other "
                              "folders have: every corpus needs every label (or leave the label out of all of them)")
    clips = [c for part in parts for c in part.clips]
    for folder, name in zip(folders, names):
        scarce = _scarce([c for c in clips if c.corpus != name], union, min_clips_per_label)
        if scarce:
            raise ConfigError(f"leaving out {folder} leaves too few clips to train on: "
                              f"{', '.join(f'{k!r} ({v})' for k, v in scarce.items())}; each label needs at least "
                              f"{min_clips_per_label} (--min-clips-per-label) in every fold")
    return Dataset(clips, union, tuple(sorted({c.speaker for c in clips})), corpora=tuple(names))


def _in_corpus(clip: Clip, corpus: str) -> Clip:
    return Clip(clip.file, clip.label, clip.speaker, clip.audio, corpus)


def read_dataset(folder: Path, *, min_clips_per_label: int = 5, corpus: str = "",
                 known_labels: Sequence[str] = ()) -> Dataset:
    """The clips listed in ``folder/labels.csv`` (at least ``file,label,speaker``), decoded.
    With ``corpus``, the clips carry it and their speakers are named ``CORPUS/SPEAKER``."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder (train-ser wants a folder with audio and {LABELS_FILE})")
    table = folder / LABELS_FILE
    if not table.is_file():
        raise ConfigError(f"{table} is missing: list the clips there with the columns {','.join(REQUIRED_COLUMNS)}")
    with table.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ConfigError(f"{table} has the columns {','.join(columns) or '(none)'}; it needs "
                              f"{','.join(REQUIRED_COLUMNS)} (missing: {','.join(missing)})")
        rows = [({k.strip(): (v or "").strip() for k, v in row.items() if k}, n) for n, row in enumerate(reader, 2)]
    if known_labels:
        unknown = sorted({row["label"] for row, _ in rows if row.get("label") and row["label"] not in known_labels})
        if unknown:
            raise ConfigError(f"{table} has the label{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}, "
                              f"not one of --labels {','.join(known_labels)}")
    clips = [_clip(folder, table, row, line, corpus) for row, line in rows]
    if not clips:
        raise ConfigError(f"{table} lists no clips")
    speakers = tuple(sorted({c.speaker for c in clips}))
    if len(speakers) < MIN_SPEAKERS:
        raise ConfigError(f"{table} names one speaker ({speakers[0]}): a speaker-independent evaluation needs "
                          f"at least {MIN_SPEAKERS}, trained on some and scored on the others")
    labels = tuple(sorted({c.label for c in clips}))
    if len(labels) < 2:
        raise ConfigError(f"{table} has one label ({labels[0]}): an emotion head needs at least two")
    counts = {label: sum(c.label == label for c in clips) for label in labels}
    scarce = {label: n for label, n in counts.items() if n < min_clips_per_label}
    if scarce:
        raise ConfigError(f"{table}: too few clips for {', '.join(f'{k!r} ({v})' for k, v in scarce.items())}: "
                          f"each label needs at least {min_clips_per_label} (--min-clips-per-label)")
    for speaker in speakers if not corpus else ():  # several corpora: read_datasets checks the folds
        short = _scarce([c for c in clips if c.speaker != speaker], labels, min_clips_per_label)
        if short:
            raise ConfigError(f"{table}: without speaker {speaker} too few clips are left to train on: "
                              f"{', '.join(f'{k!r} ({v})' for k, v in short.items())}; each label needs at least "
                              f"{min_clips_per_label} (--min-clips-per-label) in every leave-one-speaker-out fold")
    return Dataset(clips, labels, speakers)


def add_folder(dataset: Dataset, label: str, folder: Path, speaker: str = "") -> Dataset:
    """``dataset`` and every audio file under ``folder`` as a ``label`` clip. The folder counts as
    one speaker named ``+FOLDER`` (or ``+SPEAKER``), so in every evaluation its clips are all on
    one side: unlabelled recordings known to carry one label (read speech as neutral, say) from
    sources apart. Folders added under the same ``speaker`` are one speaker: the same reader in two
    folders is never on both sides of a split."""
    if label not in dataset.labels:
        raise ConfigError(f"--add {label}={folder}: {label!r} is not a label of the data set "
                          f"(labels: {', '.join(dataset.labels)})")
    if not folder.is_dir():
        raise ConfigError(f"--add {label}={folder}: not a folder")
    shared = bool(speaker)
    speaker = "+" + (speaker or folder.resolve().name)
    if speaker in dataset.speakers and not (shared and speaker in dataset.added):
        raise ConfigError(f"--add {label}={folder}: a speaker or another added folder is already named {speaker}"
                          + ("" if shared else f" (name the speaker: --add {label}={folder}@SPEAKER)"))
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"--add {label}={folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) under it")
    clips = []
    for path in files:
        try:
            clips.append(Clip(path.relative_to(folder).as_posix(), label, speaker,
                              decode(path, max_seconds=3600.0).samples))
        except PermanentError as e:
            raise ConfigError(f"--add {label}={folder}: {path} cannot be used: {e}") from e
    return Dataset([*dataset.clips, *clips], dataset.labels, tuple(sorted({*dataset.speakers, speaker})),
                   tuple(dict.fromkeys((*dataset.added, speaker))), dataset.corpora)


def _clip(folder: Path, table: Path, row: dict[str, str], line: int, corpus: str = "") -> Clip:
    empty = [c for c in REQUIRED_COLUMNS if not row.get(c)]
    if empty:
        raise ConfigError(f"{table} line {line}: empty {', '.join(empty)}")
    path = folder / row["file"]
    if not path.is_file():
        raise ConfigError(f"{table} line {line}: {row['file']} does not exist in {folder}")
    try:
        audio = decode(path, max_seconds=3600.0).samples
    except PermanentError as e:
        raise ConfigError(f"{table} line {line}: {row['file']} cannot be used: {e}") from e
    speaker = f"{corpus}/{row['speaker']}" if corpus else row["speaker"]
    return Clip(row["file"], row["label"], speaker, audio, corpus)


def extract_features(dataset: Dataset, encoder: WhisperEncoder | WhisperLayerEncoder, options: TrainOptions,
                     progress: Callable[[float], None] = lambda seconds: None) -> dict[str, SpeakerFeatures]:
    """Per speaker: features of each clip, of the same-label streams and of the continuous test audio.
    ``progress`` is called with the seconds of audio each step encoded."""
    window = int(round(options.window_seconds * SAMPLE_RATE))
    hop = int(round(options.hop_seconds * SAMPLE_RATE))
    rng = np.random.default_rng(options.seed)

    def pooled(audio: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
        return encoder.pooled(audio, window, hop, pooling=options.pooling, loudness=options.loudness)

    found: dict[str, SpeakerFeatures] = {}
    for speaker in dataset.speakers:
        mine = [i for i, c in enumerate(dataset.clips) if c.speaker == speaker]
        features = found[speaker] = SpeakerFeatures()
        for i in mine:
            features.clip_windows += [(i, x) for x in pooled(dataset.clips[i].audio)[1]]
            progress(len(dataset.clips[i].audio) / SAMPLE_RATE)
        if options.streams:
            for label in dataset.labels:
                same = [i for i in mine if dataset.clips[i].label == label]
                if not same:
                    continue
                gaps = rng.uniform(*options.stream_gap_seconds, size=len(same))
                stream, _ = _joined([dataset.clips[i].audio for i in rng.permutation(same)], gaps)
                features.stream_windows += [(label, x) for x in pooled(stream)[1]]
                progress(len(stream) / SAMPLE_RATE)
        order = [mine[j] for j in rng.permutation(len(mine))]
        stream, starts = _joined([dataset.clips[i].audio for i in order], [CONTINUOUS_GAP_SECONDS] * len(order))
        bounds, x = pooled(stream)
        spans = [(i, s / SAMPLE_RATE, (s + len(dataset.clips[i].audio)) / SAMPLE_RATE) for i, s in zip(order, starts)]
        features.continuous.append((spans, [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in bounds], x))
        progress(len(stream) / SAMPLE_RATE)
    return found


def _joined(parts: Sequence[np.ndarray], gaps: Iterable[float]) -> tuple[np.ndarray, list[int]]:
    pieces, starts, position = [], [], 0
    for audio, gap in zip(parts, gaps):
        silence = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
        starts.append(position)
        pieces += [audio, silence]
        position += len(audio) + len(silence)
    return np.concatenate(pieces), starts


def fit_head(dataset: Dataset, features: dict[str, SpeakerFeatures], speakers: Sequence[str],
             options: TrainOptions, *, name: str, encoder: WhisperEncoder | WhisperLayerEncoder,
             training: dict[str, Any] | None = None, licence: str = "", start: SerHead | None = None) -> SerHead:
    """A head trained on the windows of ``speakers`` only. ``start``: a head over the same
    features whose weights the solver starts from (the evaluation's folds start from the head of
    every speaker, which makes 55 folds several times faster; the optimum is the same)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    index = {label: k for k, label in enumerate(dataset.labels)}
    rows: list[np.ndarray] = []
    targets: list[int] = []
    for speaker in speakers:
        f = features[speaker]
        rows += [x for _, x in f.clip_windows] + [x for _, x in f.stream_windows]
        targets += [index[dataset.clips[i].label] for i, _ in f.clip_windows]
        targets += [index[label] for label, _ in f.stream_windows]
    corpus = {c.speaker: c.corpus for c in dataset.clips}
    groups = [corpus[speaker] for speaker in speakers for f in [features[speaker]]
              for _ in range(len(f.clip_windows) + len(f.stream_windows))]
    x, y = np.stack(rows).astype(np.float64), np.asarray(targets)
    missing = [dataset.labels[k] for k in range(len(dataset.labels)) if k not in set(targets)]
    if missing:
        raise ConfigError(f"the speakers {', '.join(speakers)} have no clip of {', '.join(missing)}: "
                          "every label needs training clips on each side of the split")
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=options.c, max_iter=5000, tol=1e-5, warm_start=start is not None)
    if start is not None and len(dataset.labels) > 2:  # its weights on these standardised features
        model.coef_ = (start.weights * (scaler.scale_ / start.scale)[:, None]).T.copy()
        model.intercept_ = start.bias + ((scaler.mean_ - start.mean) / start.scale) @ start.weights
    model.fit(scaler.transform(x), y,
              sample_weight=sample_weights(y, groups if options.balance == "corpora" else None))
    weights, bias = model.coef_.T, model.intercept_
    if len(dataset.labels) == 2:  # a binary model is one logit for the second label: softmax of (0, z)
        weights, bias = np.hstack([np.zeros_like(weights), weights]), np.concatenate([[0.0], bias])
    head = SerHead(
        name=name, labels=dataset.labels, encoder_id=encoder.model_id,
        window_seconds=options.window_seconds, hop_seconds=options.hop_seconds,
        mean=scaler.mean_, scale=scaler.scale_, weights=weights, bias=bias,
        probe=encoder.probe(options.pooling, options.loudness), training=training or {},
        pooling=options.pooling, loudness=options.loudness, licence=licence,
        layers=tuple(options.layers), layer_mix=options.layer_mix if options.layers else "concat",
    )
    if not np.allclose(head.probabilities(x[:64]), model.predict_proba(scaler.transform(x[:64])), atol=1e-6):
        raise RuntimeError("the numpy head disagrees with the fitted model")  # a bug, never an input problem
    return head


def sample_weights(targets: np.ndarray, groups: Sequence[str] | None = None) -> np.ndarray:
    """Weights (mean 1) under which every label weighs the same (scikit-learn's "balanced") or, with
    ``groups`` (the corpus of each row), every (corpus, label) pair does: a corpus with more clips
    then teaches the head no more than a small one."""
    keys = [str(t) for t in targets] if groups is None else [f"{g}\0{t}" for g, t in zip(groups, targets)]
    _, inverse, counts = np.unique(np.asarray(keys), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * (len(w) / w.sum())


Fold = tuple[list[int], list[int], list[int], list[int], list[HeldOut]]


def predict(head: SerHead, dataset: Dataset, features: dict[str, SpeakerFeatures],
            speakers: Sequence[str]) -> Fold:
    """(truth, predicted) per clip alone and per clip in continuous audio, for ``speakers``, and each
    continuous clip's window logits and overlap weights (what calibration is fitted on)."""
    index = {label: k for k, label in enumerate(head.labels)}
    truth, by_clip, truth_c, by_context, held_out = [], [], [], [], []
    for speaker in speakers:
        f = features[speaker]
        clip_ids = np.array([i for i, _ in f.clip_windows])
        probs = head.probabilities(np.stack([x for _, x in f.clip_windows]))
        for i in dict.fromkeys(clip_ids.tolist()):
            truth.append(index[dataset.clips[i].label])
            by_clip.append(int(probs[clip_ids == i].mean(axis=0).argmax()))
        for spans, bounds, x in f.continuous:
            windows = [EmotionWindow(a, b, []) for a, b in bounds]
            logits = head.logits(x)
            scores = head.probabilities(x)
            for i, start, end in spans:
                weights = window_weights(start, end, windows)
                truth_c.append(index[dataset.clips[i].label])
                by_context.append(int((weights @ scores).argmax()))
                used = weights > 0
                held_out.append(HeldOut(truth_c[-1], weights[used], logits[used]))
    return truth, by_clip, truth_c, by_context, held_out


def fixed_test_speakers(dataset: Dataset, options: TrainOptions) -> tuple[str, ...]:
    if options.test_speakers:
        unknown = [s for s in options.test_speakers if s not in dataset.speakers]
        if unknown:
            raise ConfigError(f"--test-speakers names {', '.join(unknown)}, not in the data "
                              f"(speakers: {', '.join(dataset.speakers)})")
        if len(options.test_speakers) >= len(dataset.speakers):
            raise ConfigError("--test-speakers leaves no speaker to train on")
        return tuple(options.test_speakers)
    main = dataset.main_speakers
    return main[-max(1, len(main) // 4):]


LOCO = "leave-one-corpus-out"
LOCO_AVERAGE = f"{LOCO}: average over corpora"


def evaluate(dataset: Dataset, features: dict[str, SpeakerFeatures], options: TrainOptions, *,
             encoder: WhisperEncoder | WhisperLayerEncoder) -> list[Evaluation]:
    """The evaluations of :func:`evaluate_and_calibrate`."""
    return evaluate_and_calibrate(dataset, features, options, encoder=encoder)[0]


def evaluate_and_calibrate(dataset: Dataset, features: dict[str, SpeakerFeatures], options: TrainOptions, *,
                           encoder: WhisperEncoder | WhisperLayerEncoder) -> tuple[list[Evaluation], Calibration]:
    """Leave-one-speaker-out (and, with added folders, its figures for the labelled speakers and for
    the added folders apart; with several corpora, for each corpus apart), then with several corpora
    leave-one-corpus-out (each corpus scored by a head trained on the others and the added folders)
    and its average over corpora, or with one corpus the fixed split; and the calibration fitted on
    the out-of-fold predictions (:func:`calibrate`)."""
    everyone = fit_head(dataset, features, dataset.speakers, options, name="all", encoder=encoder)
    loso = {s: _fold(dataset, features, options, encoder, (s,), everyone) for s in dataset.speakers}
    groups = [("leave-one-speaker-out", dataset.speakers)]
    if dataset.added:
        groups += [("leave-one-speaker-out: the labelled speakers", dataset.main_speakers),
                   ("leave-one-speaker-out: the added folders", dataset.added)]
    several = len(dataset.corpora) > 1
    if several:
        groups += [(f"leave-one-speaker-out: {corpus}", dataset.speakers_of(corpus)) for corpus in dataset.corpora]
    evaluations = [_evaluation(dataset, name, speakers, [loso[s] for s in speakers]) for name, speakers in groups]
    if several:
        loco = {corpus: _fold(dataset, features, options, encoder, dataset.speakers_of(corpus), everyone)
                for corpus in dataset.corpora}
        by_corpus = [_evaluation(dataset, f"{LOCO}: {corpus}", dataset.speakers_of(corpus), [loco[corpus]])
                     for corpus in dataset.corpora]
        evaluations += [*by_corpus, Evaluation(LOCO_AVERAGE, tuple(dataset.main_speakers),
                                               Scores.average([e.clips for e in by_corpus], dataset.labels),
                                               Scores.average([e.continuous for e in by_corpus], dataset.labels))]
    else:
        held_out = fixed_test_speakers(dataset, options)
        evaluations.append(_evaluation(dataset, f"fixed split: test speakers {', '.join(held_out)}", held_out,
                                       [_fold(dataset, features, options, encoder, held_out, everyone)]))
    by_corpus_left_out = {corpus: loco[corpus][4] for corpus in dataset.corpora} if several else {}
    return evaluations, calibrate([h for s in dataset.speakers for h in loso[s][4]], by_corpus_left_out)


def _fold(dataset: Dataset, features: dict[str, SpeakerFeatures], options: TrainOptions,
          encoder: WhisperEncoder | WhisperLayerEncoder, test: tuple[str, ...], start: SerHead | None = None) -> Fold:
    """Predictions for the ``test`` speakers of a head trained on all the others."""
    train = [s for s in dataset.speakers if s not in test]
    head = fit_head(dataset, features, train, options, name="fold", encoder=encoder, start=start)
    return predict(head, dataset, features, test)


def _evaluation(dataset: Dataset, name: str, speakers: Sequence[str],
                folds: Sequence[Fold]) -> Evaluation:
    truth, by_clip, truth_c, by_context = ([x for fold in folds for x in fold[k]] for k in range(4))
    return Evaluation(name, tuple(speakers), Scores.of(truth, by_clip, dataset.labels),
                      Scores.of(truth_c, by_context, dataset.labels))


def metrics_record(evaluations: Sequence[Evaluation]) -> list[dict[str, Any]]:
    return [asdict(e) for e in evaluations]


def format_evaluation(evaluation: Evaluation, labels: Sequence[str]) -> str:
    lines = [f"{evaluation.name}"]
    for kind, scores in (("clips", evaluation.clips), ("continuous", evaluation.continuous)):
        lines.append(f"  {kind:<10} unweighted accuracy {scores.unweighted_accuracy:.3f}   weighted accuracy "
                     f"{scores.weighted_accuracy:.3f}   ({scores.clips} clips)")
        lines.append("             recall " + "  ".join(f"{k} {v:.2f}" for k, v in scores.recall.items()))
    width = max(len(label) for label in labels) + 2
    lines.append("  confusion (continuous; rows: true, columns: predicted)")
    lines.append(" " * (width + 2) + "".join(f"{label[:8]:>9}" for label in labels))
    for label, row in zip(labels, evaluation.continuous.confusion):
        lines.append(f"  {label:<{width}}" + "".join(f"{n:>9}" for n in row))
    return "\n".join(lines)


def format_calibration(calibration: Calibration) -> str:
    lines = [f"calibration (fitted on {calibration.fitted_on}, continuous audio): temperature "
             f"{calibration.temperature:.3f}, uncertain below {calibration.uncertain_below:.2f}"]
    for f in calibration.figures:
        lines.append(f"  {f.name}: ECE {f.ece_before:.3f} -> {f.ece_after:.3f} (T {f.temperature:.3f}); "
                     f"{f.flagged.share_uncertain:.0%} of {f.segments} segments uncertain (below "
                     f"{f.uncertain_below:.2f}), right {_share(f.flagged.accuracy_uncertain)} of the time, "
                     f"the others {_share(f.flagged.accuracy_certain)}")
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def options_record(options: TrainOptions) -> dict[str, Any]:
    record = asdict(options)
    record["stream_gap_seconds"] = list(options.stream_gap_seconds)
    record["test_speakers"] = list(options.test_speakers)
    record["layers"] = list(options.layers)
    return record


def options_from_record(record: dict[str, Any]) -> TrainOptions:
    """Options from a head's record; options it predates take the values of their time (int8)."""
    values = {"compute_type": "int8", **record}
    values["stream_gap_seconds"] = tuple(values["stream_gap_seconds"])
    values["test_speakers"] = tuple(values["test_speakers"])
    values["layers"] = tuple(values.get("layers", ()))
    return TrainOptions(**values)


def progress_bar(total_seconds: float, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=math.ceil(total_seconds), unit="s audio", desc="encoding", disable=not enabled,
                file=sys.stderr, bar_format="{l_bar}{bar}| {n:.0f}/{total} s audio [{elapsed}<{remaining}]")


def length_report(dataset: Dataset, options: TrainOptions) -> str:
    """How many clips of each corpus are shorter than one window (used zero-padded, as the engine
    pads them) and how many are longer (several windows): none is dropped."""
    window = options.window_seconds * SAMPLE_RATE
    lines = []
    for corpus in dict.fromkeys(c.corpus for c in dataset.clips):
        mine = [c for c in dataset.clips if c.corpus == corpus]
        short = sum(len(c.audio) < window for c in mine)
        what = corpus or ", ".join(s[1:] for s in dataset.added)
        lines.append(f"{what or 'clips'}: {len(mine)} clips, {short} shorter than one {options.window_seconds:g} s "
                     f"window (used padded), {len(mine) - short} one window or longer")
    return "\n".join(lines)


def feature_seconds(dataset: Dataset, options: TrainOptions) -> float:
    """Seconds of audio :func:`extract_features` encodes (for the progress bar)."""
    clips = sum(len(c.audio) for c in dataset.clips) / SAMPLE_RATE
    stream_gap = sum(options.stream_gap_seconds) / 2 if options.streams else 0
    gaps = len(dataset.clips) * (CONTINUOUS_GAP_SECONDS + stream_gap)
    return clips * (3 if options.streams else 2) + gaps


def model_card(head: SerHead, dataset: Dataset, evaluations: Sequence[Evaluation], options: TrainOptions, *,
               dataset_name: str, citation: str, command: str, sources: Sequence[str] = (),
               calibration: Calibration | None = None) -> str:
    """The model card written beside ``head.npz``: what it was trained on, how, and how well."""
    per_speaker = {s: {label: sum(c.speaker == s and c.label == label for c in dataset.clips)
                       for label in dataset.labels} for s in dataset.speakers}
    lines = [
        f"# Emotion head `{head.head_id}`", "",
        f"Labels: {', '.join(head.labels)}. Engine: `SER_ENGINE=whisper-head`. Encoder: `{head.encoder_id}` "
        + ("(CTranslate2 Whisper; its encoder only)." if not head.layers else
           f"(CTranslate2 Whisper's encoder weights, run block by block in torch up to layer {max(head.layers)}).")
        , "",
        "## Training data", "",
        _amount(dataset_name, [c for c in dataset.clips if c.speaker not in dataset.added],
                len(dataset.main_speakers)) + ".",
    ]
    if len(dataset.corpora) > 1:
        lines += [""] + [
            "- " + _amount(f"`{corpus}`", [c for c in dataset.clips if c.corpus == corpus],
                           len(dataset.speakers_of(corpus)))
            for corpus in dataset.corpora]
    if citation:
        lines += ["", f"Citation: {citation}"]
    if sources or head.licence:
        lines += ["", "## Sources and licences", ""]
        lines += [f"- {source}" for source in sources]
        if head.licence:
            lines += ["", f"Licence note carried by the head (shown in `engines.ser` of every result): {head.licence}"]
    if dataset.added:
        lines += ["", "Added with `--add LABEL=FOLDER`, every recording of a folder under one label; each folder "
                      "(or the folders named as one speaker with `@SPEAKER`) counts as one speaker, so no evaluation "
                      "has it on both sides:", ""]
        for folder in dataset.added:
            mine = [c for c in dataset.clips if c.speaker == folder]
            lines.append(f"- {_amount(f'`{folder[1:]}`', mine)}, as `{mine[0].label}`")
    lines += ["", "| speaker | " + " | ".join(dataset.labels) + " |",
              "|---|" + "---|" * len(dataset.labels)]
    lines += [f"| {s} | " + " | ".join(str(n) for n in counts.values()) + " |" for s, counts in per_speaker.items()]
    pooling = {"mean": "averaged (mean pooling)",
               "mean+std": "pooled as their mean and their standard deviation side by side (mean+std pooling)"}
    lines += [
        "", "## Features and head", "",
        f"- Windows of {options.window_seconds:g} s every {options.hop_seconds:g} s (the SER windows); each window "
        "alone through Whisper's encoder" + (_layer_text(options) if options.layers else "")
        + " (log-mel of the window, zero-padded when the audio is shorter"
        + ("; the log-mel shifted so that its loudest bin sits at a fixed level, which removes the recording's gain"
           if options.loudness == "mel-peak" else "") + "); the "
        f"encoder frames over real audio are {pooling[options.pooling]}.",
        f"- Training and evaluation features computed with the encoder in {options.compute_type} on the CPU; the "
        "engine applies the head to what it computes (int8 on CPU, float16 on CUDA by default).",
        "- Training windows: every clip alone" + (
            ", and same-label streams (a speaker’s clips of one label joined with pauses of "
            + "–".join(f"{g:g}" for g in options.stream_gap_seconds) + " s, then windowed)" if options.streams else "")
        + ".",
        f"- Head: features standardised, multinomial logistic regression (L2, C={options.c:g}, "
        + ("sample weights giving every (corpus, label) pair the same weight" if options.balance == "corpora"
           else "balanced class weights") + "), evaluated in numpy at inference.",
        "", "## Speaker-independent evaluation", "",
        "*clips*: each clip alone, the mean of its windows. *continuous*: each held-out speaker's clips of all "
        f"labels shuffled and joined with {CONTINUOUS_GAP_SECONDS:g} s pauses, and each clip given the "
        "overlap-weighted mean of the windows over it, as the joiner gives a transcript segment its emotion."
        + (" *leave-one-corpus-out*: each corpus scored by a head trained on the other corpora only (a new user's "
           "recordings are a new corpus: language, microphone, actors or not); the average weighs every corpus "
           "the same. These are the figures to expect on recordings unlike the training data."
           if len(dataset.corpora) > 1 else ""), "",
        "| evaluation | audio | unweighted accuracy | weighted accuracy | " + " | ".join(
            f"recall {label}" for label in dataset.labels) + " |",
        "|---|---|---|---|" + "---|" * len(dataset.labels),
    ]
    for e in evaluations:
        for kind, s in (("clips", e.clips), ("continuous", e.continuous)):
            lines.append(f"| {e.name} | {kind} | {s.unweighted_accuracy:.3f} | {s.weighted_accuracy:.3f} | "
                         + " | ".join(f"{s.recall[label]:.2f}" if label in s.recall else "–"
                                      for label in dataset.labels)
                         + " |")
    shown = [evaluations[0]] + [e for e in evaluations if e.name.startswith(LOCO + ":") and e.name != LOCO_AVERAGE]
    for e in shown:
        lines += ["", f"Confusion, {e.name}, continuous (rows: true label, columns: predicted):", "",
                  "| | " + " | ".join(dataset.labels) + " |", "|---|" + "---|" * len(dataset.labels)]
        lines += [f"| {label} | " + " | ".join(str(n) for n in row) + " |"
                  for label, row in zip(dataset.labels, e.continuous.confusion)]
    if calibration is not None:
        lines += ["", *_calibration_section(calibration)]
    lines += [
        "", "The head in this folder is trained on every speaker above; the figures come from heads trained "
        "without the speakers they score.", "",
        "## Caveats", "",
        "- Measured only on the speakers and recordings above. Acted emotions are clearer than everyday ones; "
        "accuracy on spontaneous speech, other languages, other microphones or noisy calls is not measured here "
        "and will be lower.",
        "- The head knows only its labels: every window gets one of them, however the speaker sounds.",
        *([f"- On a corpus it never heard (leave-one-corpus-out above) the head is far weaker than on new speakers "
           f"of corpora it knows: expect about {_loco_average(evaluations):.2f} unweighted accuracy (chance "
           f"{1 / len(dataset.labels):.2f}), and some labels much worse than others."]
          if _loco_average(evaluations) is not None else []),
        "- The options on the command line below (C, pooling, loudness, layers, balance, streams) are not tuned by the "
        "command: where they were chosen by comparing these same figures across options, as for the default "
        "head, the figures are optimistic by what that choice is worth.",
        (f"- Features for training and for these figures are computed in {options.compute_type} on the CPU, which "
         "gives the same features on other CPUs to rounding (`python -m bench.ser_cpus`); the engine runs int8 on "
         "CPU, whose features differ from float32 by a few per cent and may change a window's top label (the same "
         "bench counts them)." if not options.layers else
         "- Features for training, for these figures and in the engine are computed the same way: the encoder's "
         "blocks in torch, float32 (on CUDA too), so `workers run` sees the features the card measures, to "
         "rounding."),
        *(["- The added folders carry their label by assumption (read speech taken as neutral, for one), not by "
           "anyone's judgement of each recording."] if dataset.added else []), "",
        "## Reproduce", "", "```sh", command, "```", "",
        "Format: `head.npz` is NumPy's zip of plain arrays (no pickle); see `workers/engines/ser_head.py`.", "",
    ]
    return "\n".join(lines)


def _calibration_section(calibration: Calibration) -> list[str]:
    lines = [
        "## Calibration and `uncertain`", "",
        f"The head divides its logits by a temperature T = {calibration.temperature:.3f} before the softmax, "
        f"fitted on the {calibration.fitted_on} predictions above (continuous audio: each held-out clip's "
        "probability is the overlap-weighted mean of its windows', as the joiner gives a segment its emotion) "
        "by least negative log-likelihood, so that a segment given probability p is right about p of the time "
        "on a corpus like these.",
        f"A segment whose top probability is below {calibration.uncertain_below:.2f} is marked `uncertain`. The "
        "threshold is chosen on the same held-out segments: the smallest of 0.30, 0.35, …, 0.95 from which on "
        "every band of top probability 0.1 wide holding at least 20 segments is right more than half the time "
        "(workers/training/calibration.py).",
        "ECE: expected calibration error of the top label, 10 equal-width bins. Rows named *calibrated on the "
        "other corpora* use a T and a threshold fitted without the corpus they score: the honest estimate for a "
        "new corpus; the other rows use the head's own T, fitted on them (one parameter, so little optimism).", "",
        "| held-out segments | segments | T | ECE before (T = 1) | ECE after | uncertain below | share uncertain "
        "| accuracy of the uncertain | accuracy of the others |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in calibration.figures:
        lines.append(f"| {f.name} | {f.segments} | {f.temperature:.3f} | {f.ece_before:.3f} | {f.ece_after:.3f} | "
                     f"{f.uncertain_below:.2f} | {f.flagged.share_uncertain:.2f} | "
                     f"{_share(f.flagged.accuracy_uncertain)} | {_share(f.flagged.accuracy_certain)} |")
    return lines


def _layer_text(options: TrainOptions) -> str:
    names = [f"{k}" for k in options.layers]
    which = f"layer {names[0]}" if len(names) == 1 else "layers " + ", ".join(names)
    how = "" if len(names) == 1 else (", averaged" if options.layer_mix == "mean" else ", side by side")
    return (f", of which the frames of {which}{how} are pooled (0: the input of the first block; the blocks "
            "run in torch in float32, only as deep as needed, the same weights as CTranslate2's)")


def _loco_average(evaluations: Sequence[Evaluation]) -> float | None:
    return next((e.clips.unweighted_accuracy for e in evaluations if e.name == LOCO_AVERAGE), None)


def _amount(name: str, clips: Sequence[Clip], speakers: int = 0) -> str:
    seconds = sum(len(c.audio) for c in clips) / SAMPLE_RATE
    return f"{name}: {len(clips)} clip{'s' * (len(clips) != 1)}, " + (f"{speakers} speakers, " if speakers else "") + (
        f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s")


def write_model(out: Path, head: SerHead, card: str, encoder_path: Path) -> None:
    """A model folder the engine loads: the head, its card and a link to the encoder."""
    from workers.engines.ser_head import CARD_FILE, ENCODER_DIR, HEAD_FILE

    out.mkdir(parents=True, exist_ok=True)
    head.save(out / HEAD_FILE)
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    link = out / ENCODER_DIR
    if link.is_symlink() or not link.exists():
        link.unlink(missing_ok=True)
        link.symlink_to(encoder_path.resolve(), target_is_directory=True)
